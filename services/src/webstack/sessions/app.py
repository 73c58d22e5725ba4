# -*- test-case-name: webstack.tests.test_sessions -*-
"""
The session service (C{twistd -n webstack-session}): the three session seeds
under C{/session/}.

Sessions live in this process's memory, as in Twisted (C{Site.sessions}).
With several replicas, the front keeps each client on the replica that
first served it, with a signed routing cookie of its own
(C{front.routes.session.sticky}); a replica that goes away takes its
sessions with it.  See the README for why this is the choice.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from twisted.web.resource import Resource

from webstack.runtime.config import setting
from webstack.runtime.plugin import App, AppContext

from .basics import ExpireSession, ShowSession
from .endings import ExpirationLogger, shortSessionClass
from .request import SessionRequest
from .store import CounterResource

SECTION = "session"


@dataclass(frozen=True)
class Settings:
    timeout: float = setting(
        60.0, minimum=1, maximum=86400, help="a session expires this long after its last visit (s)"
    )
    trusted_proxies: str = setting(
        "127.0.0.1/32,::1/128", help="peers whose X-Forwarded-Proto is believed"
    )


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    registry = context.registry
    created = Counter("sessions_created_total", "Sessions made.", registry=registry)
    expired = Counter(
        "sessions_expired_total", "Sessions ended (timed out or expired).", registry=registry
    )
    active = Gauge("sessions_active", "Sessions alive now.", registry=registry)
    sessionClass = shortSessionClass(settings.timeout, created.inc, expired.inc)
    proxies = tuple(
        ipaddress.ip_network(n.strip(), strict=False)
        for n in settings.trusted_proxies.split(",")
        if n.strip()
    )

    class Request(SessionRequest):
        trustedProxies = proxies

    def configureSite(site) -> None:
        site.sessionFactory = sessionClass
        site.requestFactory = Request
        active.set_function(lambda: len(site.sessions))

    sessions = Resource()
    sessions.putChild(b"", ShowSession())
    sessions.putChild(b"expire", ExpireSession())
    sessions.putChild(b"counter", CounterResource())
    sessions.putChild(b"logme", ExpirationLogger())
    root = Resource()
    root.putChild(b"session", sessions)
    context.mountOps(root)
    return App(
        resource=root,
        routes=[
            "/session/expire",
            "/session/counter",
            "/session/logme",
            "/session/",
            "/healthz",
            "/readyz",
            "/metrics",
        ],
        configureSite=configureSite,
    )
