# -*- test-case-name: webstack.tests.test_front_integration -*-
"""
The front (C{twistd -n webstack-front}): the landing page at C{/}, its own
C{/-/healthz}, C{/-/readyz} and C{/-/metrics}, and every configured route
proxied to its service's replicas.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from twisted.application.internet import TimerService
from twisted.internet.defer import DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.resource import Resource
from zope.interface import implementer

from webstack.runtime.errors import errorBody
from webstack.runtime.plugin import App, AppContext

from .landing import LandingPage
from .metrics import ProxyMetrics, ReplicaCollector
from .probe import probeAll
from .proxy import RouteProxy
from .settings import SECTION, SUBTABLES, Settings, loadSettings
from .upstreams import ReplicaSet

__all__ = ["SECTION", "SUBTABLES", "Settings", "loadSettings", "makeApp"]

PROBE_TIMEOUT = 2.0


def unsafePath(path: bytes) -> bool:
    """
    Whether C{path} has a dot segment (C{.} or C{..}, raw, percent-encoded or
    double-encoded), a backslash or a NUL byte.  Such paths never reach a
    service: each service guards its own root as well, but the front refuses
    them first, so no route can be left through another's prefix.
    """
    candidates = [path]
    if b"%" in path:
        once = unquote_to_bytes(path)
        candidates += [once, unquote_to_bytes(once)]
    for candidate in candidates:
        if b"\\" in candidate or b"\x00" in candidate:
            return True
        if any(segment in (b".", b"..") for segment in candidate.split(b"/")):
            return True
    return False


def _quietFactory(quiescentCallback, metadata):
    factory = HTTPConnectionPool._factory(quiescentCallback, metadata)
    factory.noisy = False
    return factory


class QuietConnectionPool(HTTPConnectionPool):
    """
    An L{HTTPConnectionPool} whose connections do not log "Starting factory"
    and "Stopping factory": under load that is two log lines, and most of
    the cost of a new upstream connection, for every one of them.
    """

    _factory = staticmethod(_quietFactory)


@implementer(IAgentEndpointFactory)
class ReplicaEndpointFactory:
    """
    Connect straight to a replica's address.

    The front resolves upstream names itself (L{ReplicaSet}), so every URL it
    asks the Agent for already holds an IP address.  Agent's default,
    L{HostnameEndpoint}, would still resolve it again in a thread and, for
    a refused connection, wait out its happy-eyeballs delay (0.3 s) before
    failing: a plain TCP endpoint fails at once.
    """

    def __init__(self, reactor, connectTimeout: float) -> None:
        self._reactor = reactor
        self._timeout = connectTimeout

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
        return _NoDelay(kind(self._reactor, host, uri.port, timeout=self._timeout))


@implementer(IStreamClientEndpoint)
class _NoDelay:
    """
    Turn Nagle's algorithm off on upstream connections, as Twisted's server
    does on its own: otherwise a request body written after its head waits
    for the head's (delayed) acknowledgement, up to 40 ms.
    """

    def __init__(self, endpoint) -> None:
        self._endpoint = endpoint

    def connect(self, factory):
        def noDelay(protocol):
            protocol.transport.setTcpNoDelay(True)
            return protocol

        return self._endpoint.connect(factory).addCallback(noDelay)


class FrontRoot(Resource):
    """
    Dispatch on the whole path: a route's prefix (longest first), C{/-/}
    for the front's own endpoints, C{/} for the landing page.
    """

    def __init__(self, proxies: list[tuple[bytes, RouteProxy]], landing, ops) -> None:
        super().__init__()
        self._proxies = sorted(proxies, key=lambda pair: len(pair[0]), reverse=True)
        self._landing = landing
        self._ops = ops

    def getChildWithDefault(self, name, request):
        path = request.path
        if unsafePath(path):
            return _Refusal(400, "The path has a dot segment, a backslash or a NUL byte.")
        for prefix, proxy in self._proxies:
            if path.startswith(prefix) or path == prefix[:-1]:
                return proxy
        if name == b"-":
            return self._ops
        if path == b"/":
            return self._landing
        return _Refusal(404, "No demo is served at this path; the demos are listed at /.")


class _Refusal(Resource):
    isLeaf = True

    def __init__(self, status: int, detail: str) -> None:
        super().__init__()
        self._status = status
        self._detail = detail

    def render(self, request):
        return errorBody(request, self._status, self._detail)


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    reactor = context.reactor

    pool = QuietConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = settings.pool_max_per_host
    pool.cachedConnectionTimeout = settings.pool_idle_timeout
    agent = Agent.usingEndpointFactory(
        reactor, ReplicaEndpointFactory(reactor, settings.connect_timeout), pool=pool
    )

    replicaSets = {
        route.name: ReplicaSet(
            route.name, route.targets(), reactor, settings.eject_seconds
        )
        for route in settings.routes
    }
    metrics = ProxyMetrics(context.registry)
    context.registry.register(ReplicaCollector(replicaSets))

    proxies = [
        (
            route.prefix.encode("ascii"),
            RouteProxy(
                route,
                replicaSets[route.name],
                agent=agent,
                reactor=reactor,
                metrics=metrics,
                trustForwarded=settings.trust_forwarded,
            ),
        )
        for route in settings.routes
    ]
    ops = Resource()
    context.mountOps(ops)

    def upstreamsKnown():
        missing = [
            name
            for name, replicaSet in replicaSets.items()
            if replicaSet.configured and not replicaSet.replicas
        ]
        if missing:
            return False, f"no replica resolved for: {', '.join(missing)}"
        return True, f"{len(replicaSets)} route(s)"

    context.health.addCheck("upstreams", upstreamsKnown)

    def refreshAll():
        return DeferredList([s.refresh() for s in replicaSets.values()], consumeErrors=True)

    def closePool():
        d = pool.closeCachedConnections()
        # closeCachedConnections can hang on a dead peer (twisted#7738).
        d.addTimeout(2.0, reactor)
        return d.addErrback(lambda _: None)

    return App(
        resource=FrontRoot(proxies, LandingPage(settings.routes, replicaSets), ops),
        routes=[r.prefix for r in settings.routes] + ["/-/"],
        children=[
            TimerService(settings.resolve_interval, refreshAll),
            TimerService(
                settings.health_interval,
                probeAll,
                agent,
                reactor,
                replicaSets,
                PROBE_TIMEOUT,
            ),
        ],
        stopHooks=[closePool],
    )
