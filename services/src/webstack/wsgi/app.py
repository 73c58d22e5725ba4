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

from twisted.web.resource import Resource
from twisted.web.static import Data

from webstack.runtime.plugin import App, AppContext

from . import hello
from .calls import BoundedCalls
from .demo import makeApplication
from .length import withContentLength
from .pool import DaemonThreadPool, PoolCollector, ThreadPoolService
from .resource import BoundedWSGIResource, Rejections
from .settings import SECTION, Settings

__all__ = ["SECTION", "Settings", "makeApp"]

_INDEX = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WSGI</title></head><body>
<h1>WSGI on Twisted</h1>
<ul><li><a href="hello">hello</a>: the seed's application</li>
<li><a href="app/">app/</a>: a small real one (form, environ, slow, raise)</li></ul>
</body></html>
"""


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
    poolService = ThreadPoolService(context.reactor, calls, context.runtime.drain_timeout)
    return App(
        resource=root,
        routes=["/wsgi/hello", "/wsgi/app/slow", "/wsgi/app/", "/wsgi/"],
        children=[poolService],
        # The calls get drain_timeout from when the drain begins, as the
        # requests do, not from when the pool's own stop comes after it.
        drainHooks=[poolService.stopBegins],
    )
