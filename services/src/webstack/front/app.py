# -*- test-case-name: tests.test_front_integration -*-
"""
The front (C{twistd -n webstack-front}): the landing page at C{/}, its own
C{/-/healthz}, C{/-/readyz} and C{/-/metrics} (mounted by the runtime at
C{/-/}, as every service's at C{/}) with its dashboard, C{/-/dashboard},
and every configured route proxied to its service's replicas.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from twisted.application.internet import TimerService
from twisted.internet.defer import DeferredList
from twisted.web.resource import Resource

from webstack.runtime.errors import errorBody
from webstack.runtime.ops import mountOps
from webstack.runtime.plugin import App, AppContext

from .affinity import routeCookie
from .client import UpstreamPool
from .dashboard import (
    DashboardResource,
    EverySecond,
    PrometheusSource,
    Sampler,
    frontCounters,
)
from .landing import LandingPage, Links
from .metrics import ProxyMetrics, ReplicaGauges
from .probe import probeAll, probeReplica
from .proxy import RouteProxy
from .settings import SECTION, SUBTABLES, Settings, loadSettings
from .upstreams import ReplicaSet

__all__ = ["SECTION", "SUBTABLES", "Settings", "loadSettings", "makeApp"]

PROBE_TIMEOUT = 2.0


_NOT_VISIBLE = re.compile(rb"[^\x21-\x7e]")
"""
A byte no request target may hold (RFC 9112: visible ASCII only; anything
else is percent-encoded): refused at the front rather than passed to a
service to trip over.
"""


def unsafePath(path: bytes) -> bool:
    """
    Whether C{path} has a dot segment (C{.} or C{..}, raw, percent-encoded or
    double-encoded), a backslash or a NUL byte.  Such paths never reach a
    service: each service guards its own root as well, but the front refuses
    them first, so no route can be left through another's prefix.
    """
    # find() rather than `in` on every request's path: CPython 3.11's
    # bytes `in` costs five times as much (see LimitedHTTPChannel._wholeHead).
    if path.find(b"%") < 0 and path.find(b".") < 0:
        # Nothing encoded and no dot: no dot segment (most paths).
        return path.find(b"\\") >= 0 or path.find(b"\x00") >= 0
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


_NEVER_FORWARDED = frozenset({b"TRACE", b"CONNECT"})
"""
Methods the front answers itself, with 405: C{TRACE} echoes the request,
cookies and credentials included, back to whatever script sent it (cross-site
tracing); C{CONNECT} would make the front a tunnel.  No service serves
either, so none is asked.
"""
_ALLOWED = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"


def bodyLimits(routes, default: int):
    """
    A function of a request path giving the largest request body the front
    accepts for it: its route's C{max_body_bytes} (longest prefix first),
    else C{default}, the front's own.
    """
    table = sorted(
        ((route.prefix.encode("ascii"), route.max_body_bytes) for route in routes),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )

    def limitFor(path: bytes) -> int:
        for prefix, limit in table:
            if path.startswith(prefix):
                return limit
        return default

    return limitFor


class FrontRoot(Resource):
    """
    Dispatch on the whole path: a route's prefix (longest first), C{/-/}
    for the front's own endpoints (its child C{-}, where the runtime puts
    them), C{/} for the landing page.
    """

    def __init__(self, proxies: list[tuple[bytes, RouteProxy]], landing) -> None:
        super().__init__()
        self._proxies = sorted(proxies, key=lambda pair: len(pair[0]), reverse=True)
        self._landing = landing
        self._ops = Resource()
        self.putChild(b"-", self._ops)

    def getChildWithDefault(self, name, request):
        path = request.path
        if _NOT_VISIBLE.search(request.uri):
            return _Refusal(
                400, "The request target has a byte that is not visible ASCII (RFC 9112)."
            )
        if unsafePath(path):
            return _Refusal(400, "The path has a dot segment, a backslash or a NUL byte.")
        if request.method in _NEVER_FORWARDED:
            return _Refusal(
                405,
                f"The front answers no {request.method.decode('ascii')} request.",
                allow=_ALLOWED,
            )
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

    def __init__(self, status: int, detail: str, allow: bytes | None = None) -> None:
        super().__init__()
        self._status = status
        self._detail = detail
        self._allow = allow

    def render(self, request):
        if self._allow is not None:
            request.setHeader(b"allow", self._allow)
        return errorBody(request, self._status, self._detail)


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    reactor = context.reactor

    pool = UpstreamPool(
        reactor,
        connectTimeout=settings.connect_timeout,
        maxIdle=settings.pool_max_per_host,
        idleTimeout=settings.pool_idle_timeout,
    )

    replicaSets = {
        route.name: ReplicaSet(
            route.name, route.targets(), reactor, settings.eject_seconds
        )
        for route in settings.routes
    }
    for replicaSet in replicaSets.values():
        # A replica that appears (a scaled or replaced container) is probed
        # at once: it is sent nothing until a probe passes.
        replicaSet.newReplica = (
            lambda replica, replicaSet=replicaSet: probeReplica(
                pool, reactor, replicaSet, replica, PROBE_TIMEOUT
            )
        )
    metrics = ProxyMetrics(context.registry)
    metrics.declare(route.name for route in settings.routes)
    gauges = ReplicaGauges(context.registry, replicaSets)

    proxies = [
        (
            route.prefix.encode("ascii"),
            RouteProxy(
                route,
                replicaSets[route.name],
                pool=pool,
                reactor=reactor,
                metrics=metrics,
                trustForwarded=settings.trust_forwarded,
                routeCookie=routeCookie(settings, route),
            ),
        )
        for route in settings.routes
    ]
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
        pool.closeIdle()

    def configureSite(site) -> None:
        site.bodyLimit = bodyLimits(settings.routes, context.runtime.max_body_bytes)

    sampler = Sampler(
        reactor,
        frontCounters(context.registry, context.metricsDir),
        settings.routes,
        points=settings.dashboard_points,
        window=settings.dashboard_window,
        prometheus=PrometheusSource(
            pool, reactor, settings.prometheus_url, settings.prometheus_timeout
        )
        if settings.prometheus_url
        else None,
    )
    sampling = EverySecond(reactor, sampler.sample)
    links = Links(
        prometheus=settings.prometheus_public_url,
        locust=settings.locust_ui_url,
        sampler=sampler,
    )
    root = FrontRoot(
        proxies,
        LandingPage(settings.routes, replicaSets, gauges, context.metricsDir, links=links),
    )
    # Beside the operators' endpoints the runtime puts there.
    mountOps(root, "/-/", {b"dashboard": DashboardResource(sampler)})

    return App(
        resource=root,
        routes=[r.prefix for r in settings.routes] + ["/-/"],
        opsPath="/-/",
        children=[
            TimerService(settings.resolve_interval, refreshAll),
            TimerService(1.0, pool.sweep),
            TimerService(1.0, gauges.publish),
            sampling,
            TimerService(
                settings.health_interval,
                probeAll,
                pool,
                reactor,
                replicaSets,
                PROBE_TIMEOUT,
            ),
            TimerService(
                settings.unhealthy_interval,
                probeAll,
                pool,
                reactor,
                replicaSets,
                PROBE_TIMEOUT,
                True,
            ),
        ],
        stopHooks=[closePool],
        configureSite=configureSite,
    )
