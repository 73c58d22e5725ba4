# Seed 004, "storing objects in the session", as the seed runs it, with the
# cache() call the seed says it needs: without it this file runs again on
# every request, ICounter is a new interface each time, a new key in the
# session, and the count never gets past 1.  (Try it: remove cache(), ask
# twice with the same cookie.)  The module version, where the interface is
# defined once because modules are imported once, is the session service.
#
# request.getSession() is the static service's (webstack.runtime.sessions):
# the cookie is TWISTED_SESSION_RPY, Path=/rpy/, HttpOnly, SameSite=Lax (not
# Twisted's TWISTED_SESSION, Path=/, which is the session service's behind the
# same front), the response is Cache-Control: private, no-store, and sessions
# are few (static.rpy_max_sessions) and short (static.rpy_session_timeout).
cache()

from zope.interface import Attribute, Interface, implementer

from twisted.python.components import registerAdapter
from twisted.web.resource import Resource
from twisted.web.server import Session


class ICounter(Interface):
    value = Attribute("An int value which counts up once per page view.")


@implementer(ICounter)
class Counter:
    def __init__(self, session):
        self.value = 0


registerAdapter(Counter, Session, ICounter)


class CounterResource(Resource):
    def render_GET(self, request):
        session = request.getSession()
        counter = ICounter(session)
        counter.value += 1
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Visit #%d for you!" % (counter.value,)


resource = CounterResource()
