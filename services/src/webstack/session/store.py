# -*- test-case-name: tests.test_session -*-
"""
Seed 004, "storing objects in the session": an C{ICounter} interface, a
C{Counter} that implements it, C{registerAdapter(Counter, Session, ICounter)},
and C{ICounter(session)} to get the same counter back on every visit.

Served at C{/session/counter}.  Modern zope.interface: C{@implementer}
instead of C{implements()}.  No C{cache()} is needed: this is a module,
imported once, so C{ICounter} is one interface and the adapter is registered
once (the .rpy version at C{/rpy/counter.rpy} needs C{cache()} for that).
"""

from twisted.python.components import registerAdapter
from twisted.web.resource import Resource
from twisted.web.server import Session
from zope.interface import Attribute, Interface, implementer


class ICounter(Interface):
    value = Attribute("An int value which counts up once per page view.")


@implementer(ICounter)
class Counter:
    def __init__(self, session):
        self.value = 0


registerAdapter(Counter, Session, ICounter)


class CounterResource(Resource):
    isLeaf = True

    def render_GET(self, request):
        session = request.getSession()
        counter = ICounter(session)
        counter.value += 1
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Visit #%d for you!" % (counter.value,)
