# -*- test-case-name: tests.test_async -*-
"""
The async service (C{twistd -n webstack-async}): the delayed-response seeds
000-003 under C{/async/}, with their counters at C{/async/stats}.

(The package is C{async_}, PEP 8's spelling of a name that is a Python
keyword; the service, its route, its config table, its container and its
plugin are all C{async}.)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from twisted.web.resource import Resource

from webstack.runtime.plugin import App, AppContext

from .deferred import DeferredDelayedResource
from .delay import DelayedResource
from .interruptible import InterruptibleDelayedResource
from .logged import LoggedDelayedResource
from .settings import SECTION, Settings
from .stats import DelayStats, StatsResource
from .stream import StreamingResource

__all__ = ["SECTION", "Settings", "makeApp"]

ENDPOINTS = {
    b"delay": (DelayedResource, "001", "callLater, write, finish, NOT_DONE_YET"),
    b"deferred": (DeferredDelayedResource, "003", "the same with task.deferLater"),
    b"interruptible": (
        InterruptibleDelayedResource,
        "000",
        "notifyFinish errback cancels the delayed call",
    ),
    b"logged": (LoggedDelayedResource, "002", "the same, and the failure is logged"),
    b"stream": (StreamingResource, "001", "request.write repeatedly over time"),
}


class IndexResource(Resource):
    """
    C{/async/}: what each endpoint is and which seed it shows, as JSON.
    """

    isLeaf = True

    def __init__(self, limits: Settings) -> None:
        super().__init__()
        self._limits = limits

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        document = {
            "service": "async",
            "endpoints": {
                f"/async/{name.decode()}": {"seed": seed, "shows": shows}
                for name, (_, seed, shows) in ENDPOINTS.items()
            },
            "limits": asdict(self._limits),
            "stats": "/async/stats",
        }
        return json.dumps(document, indent=1).encode("utf-8") + b"\n"


def makeApp(context: AppContext) -> App:
    limits: Settings = context.settings
    stats = DelayStats(name.decode() for name in ENDPOINTS)
    context.registry.register(stats)

    demos = Resource()
    demos.putChild(b"", IndexResource(limits))
    for name, (cls, _, _) in ENDPOINTS.items():
        demos.putChild(name, cls(context.reactor, limits, stats))
    demos.putChild(b"stats", StatsResource(stats))

    root = Resource()
    root.putChild(SECTION.encode(), demos)
    routes = [f"/{SECTION}/{name.decode()}" for name in ENDPOINTS]
    return App(resource=root, routes=[*routes, "/async/stats"])
