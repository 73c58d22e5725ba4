# -*- test-case-name: tests.test_session -*-
"""
The session service (C{twistd -n webstack-session}): the three session seeds
under C{/session/}.

Sessions live in this process's memory, as in Twisted (C{Site.sessions}),
at most C{session.max_sessions} of them, each C{session.timeout} seconds
after its last visit (L{webstack.runtime.sessions}).  Their cookie,
C{TWISTED_SESSION}, is scoped to C{/session/}, the prefix of every route
that uses it.  With several replicas, the front keeps each client on the
replica that first served it, with a signed routing cookie of its own
(C{front.routes.session.sticky}); a replica that goes away takes its
sessions with it.  See the README for why this is the choice.
"""

from __future__ import annotations

from twisted.web.resource import Resource

from webstack.runtime.plugin import App, AppContext
from webstack.runtime.sessions import SiteSessions

from .basics import ExpireSession, ShowSession
from .endings import ExpirationLogger
from .settings import SECTION, Settings
from .store import CounterResource

__all__ = ["SECTION", "Settings", "makeApp"]

COOKIE_NAME = b"TWISTED_SESSION"
COOKIE_PATH = b"/session/"


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    sessions = SiteSessions(
        registry=context.registry,
        cookieName=COOKIE_NAME,
        cookiePath=COOKIE_PATH,
        timeout=settings.timeout,
        maxSessions=settings.max_sessions,
        trustedProxies=settings.trustedProxies(),
    )
    seeds = Resource()
    seeds.putChild(b"", ShowSession())
    seeds.putChild(b"expire", ExpireSession())
    seeds.putChild(b"counter", CounterResource())
    seeds.putChild(b"logme", ExpirationLogger())
    root = Resource()
    root.putChild(b"session", seeds)
    return App(
        resource=root,
        routes=["/session/expire", "/session/counter", "/session/logme", "/session/"],
        configureSite=sessions.install,
    )
