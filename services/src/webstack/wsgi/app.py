# -*- test-case-name: tests.test_wsgi -*-
"""
The WSGI service (C{twistd -n webstack-wsgi}): seed 004's L{WSGIResource}.

As the seed advises, the applications run on a thread pool of their own,
sized from the settings and started and stopped with the service, not on the
reactor's pool (L{webstack.wsgi.pool}).  Unlike Twisted's resource, calls
wait for a thread in a bounded queue (C{queue_max}; beyond it, 503 at
once), a call whose client left while it waited is not made, and a stop
does not run the backlog (L{webstack.wsgi.calls},
L{webstack.wsgi.resource}).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.resource import Resource
from twisted.web.static import Data

from webstack.runtime.config import ConfigError, setting
from webstack.runtime.plugin import App, AppContext

from . import hello
from .calls import BoundedCalls
from .demo import makeApplication
from .length import withContentLength
from .pool import DaemonThreadPool, PoolCollector, ThreadPoolService
from .resource import BoundedWSGIResource, Rejections

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
    queue_max: int = setting(
        20,
        minimum=0,
        maximum=10000,
        help="WSGI calls that may wait for a thread; beyond, 503 with Retry-After at once",
    )
    slow_max_seconds: float = setting(30.0, minimum=0, maximum=600)

    def __post_init__(self) -> None:
        if self.threads_min > self.threads_max:
            raise ConfigError(
                f"wsgi.threads_min = {self.threads_min} is invalid:"
                f" larger than wsgi.threads_max = {self.threads_max}"
            )


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    pool = DaemonThreadPool(settings.threads_min, settings.threads_max, name="wsgi")
    calls = BoundedCalls(context.reactor, pool, settings.queue_max, context.registry)
    rejections = Rejections(context.registry)
    context.registry.register(PoolCollector(calls))

    def bounded(application):
        return BoundedWSGIResource(context.reactor, calls, application, rejections)

    wsgi = Resource()
    wsgi.putChild(b"", Data(_INDEX, "text/html; charset=utf-8"))
    # Both applications return their bodies whole: said with Content-Length,
    # not chunked (see webstack.wsgi.length).
    wsgi.putChild(b"hello", bounded(withContentLength(hello.application)))
    wsgi.putChild(
        b"app", bounded(withContentLength(makeApplication(settings.slow_max_seconds)))
    )
    root = Resource()
    root.putChild(b"wsgi", wsgi)
    context.mountOps(root)
    return App(
        resource=root,
        routes=["/wsgi/hello", "/wsgi/app/slow", "/wsgi/app/", "/wsgi/", "/healthz", "/readyz", "/metrics"],
        children=[ThreadPoolService(context.reactor, calls, context.runtime.drain_timeout)],
    )
