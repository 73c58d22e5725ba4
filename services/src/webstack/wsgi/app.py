# -*- test-case-name: webstack.tests.test_wsgi -*-
"""
The WSGI service (C{twistd -n webstack-wsgi}): seed 004's L{WSGIResource}.

As the seed advises, the applications run on a L{ThreadPool} of their own,
sized from the settings and started and stopped with the service, not on the
reactor's pool (whose size also bounds DNS lookups and everything else that
defers to threads).  Its size, busy threads and queued calls are in
C{/metrics}, so a saturated pool can be seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.static import Data
from twisted.web.wsgi import WSGIResource

from webstack.runtime.config import ConfigError, setting
from webstack.runtime.plugin import App, AppContext

from . import hello
from .demo import makeApplication
from .length import withContentLength

SECTION = "wsgi"

_INDEX = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WSGI</title></head><body>
<h1>WSGI on Twisted</h1>
<ul><li><a href="hello">hello</a>: the seed's application</li>
<li><a href="app/">app/</a>: a small real one (form, environ, slow, raise)</li></ul>
</body></html>
"""


@dataclass(frozen=True)
class Settings:
    threads_min: int = setting(2, minimum=0, maximum=256, help="threads kept ready")
    threads_max: int = setting(10, minimum=1, maximum=256, help="most WSGI calls at once")
    slow_max_seconds: float = setting(30.0, minimum=0, maximum=600)

    def __post_init__(self) -> None:
        if self.threads_min > self.threads_max:
            raise ConfigError(
                f"wsgi.threads_min = {self.threads_min} is invalid:"
                f" larger than wsgi.threads_max = {self.threads_max}"
            )


class ThreadPoolService(Service):
    """
    Start a thread pool with the service and stop it (waiting for its calls
    to return) when the service stops.
    """

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


class PoolCollector(Collector):
    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def collect(self):
        pool = self.pool
        for name, doc, value in (
            ("wsgi_pool_max_threads", "Most WSGI calls that run at once.", pool.max),
            ("wsgi_pool_threads", "Threads the pool has now.", pool.workers),
            ("wsgi_pool_busy", "Threads running a WSGI call now.", len(pool.working)),
            (
                "wsgi_pool_queued",
                "WSGI calls waiting for a free thread.",
                pool.q.qsize(),
            ),
        ):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            yield family


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    pool = ThreadPool(settings.threads_min, settings.threads_max, name="wsgi")
    context.registry.register(PoolCollector(pool))

    wsgi = Resource()
    wsgi.putChild(b"", Data(_INDEX, "text/html; charset=utf-8"))
    # Both applications return their bodies whole: said with Content-Length,
    # not chunked (see webstack.wsgi.length).
    wsgi.putChild(
        b"hello",
        WSGIResource(context.reactor, pool, withContentLength(hello.application)),
    )
    wsgi.putChild(
        b"app",
        WSGIResource(
            context.reactor,
            pool,
            withContentLength(makeApplication(settings.slow_max_seconds)),
        ),
    )
    root = Resource()
    root.putChild(b"wsgi", wsgi)
    context.mountOps(root)
    return App(
        resource=root,
        routes=["/wsgi/hello", "/wsgi/app/slow", "/wsgi/app/", "/wsgi/", "/healthz", "/readyz", "/metrics"],
        children=[ThreadPoolService(pool)],
    )
