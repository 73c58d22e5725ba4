# -*- test-case-name: tests.test_async -*-
"""
What the delayed endpoints share, so that each seed's own file holds only what
that seed shows: the reactor they are given (never the global one, so tests
drive them with a L{Clock}), the checked C{seconds} parameter, and the stats.
"""

from __future__ import annotations

from twisted.web.resource import Resource

from webstack.runtime.errors import errorBody

from .params import BadParameter, numberArgument
from .settings import Settings
from .stats import DelayStats, Ticket

BODY = b"<html><body>Sorry to keep you waiting.</body></html>"
"""
The seeds' response body.
"""


class DelayedEndpoint(Resource):
    """
    A delayed endpoint: C{GET ?seconds=S} checks S, opens a stats ticket and
    hands over to C{renderDelayed}.

    @cvar endpoint: the endpoint's name in the stats.
    """

    isLeaf = True
    endpoint = ""

    def __init__(self, reactor, limits: Settings, stats: DelayStats) -> None:
        super().__init__()
        self.reactor = reactor
        self.limits = limits
        self.stats = stats

    def render_GET(self, request):
        try:
            seconds = numberArgument(
                request,
                "seconds",
                default=self.limits.default_seconds,
                maximum=self.limits.max_seconds,
            )
        except BadParameter as e:
            return errorBody(request, 400, str(e))
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        ticket = self.stats.start(self.endpoint, getattr(request, "requestId", "-"))
        return self.renderDelayed(request, seconds, ticket)

    def renderDelayed(self, request, seconds: float, ticket: Ticket):
        raise NotImplementedError()
