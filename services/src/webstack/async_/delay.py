# -*- test-case-name: tests.test_async -*-
"""
Seed 001, "asynchronous responses": C{reactor.callLater} + C{request.write} +
C{request.finish}, and C{NOT_DONE_YET} from the render method.

Served at C{/async/delay?seconds=S}.  Concurrent requests do not wait on each
other: each one takes S seconds from the time it was made.

What changed from the seed, and why:
  - the reactor is passed in (see the WSGI seed on why), S comes from the
    query string, the body is bytes;
  - the body, written in one piece, goes with its C{Content-Length}
    (L{finishWith}): without it, Twisted sends it chunked;
  - the seed does not notice a client that leaves (seed 000 adds that), so its
    render runs anyway and C{request.finish()} on the closed connection raises
    C{RuntimeError}.  Here the render still runs, as in the seed, but knows the
    client is gone: it writes nothing and counts the work as I{wasted}, which
    is exactly what C{/async/interruptible} then saves.
"""

from twisted.web.server import NOT_DONE_YET

from webstack.runtime.site import finishWith

from .base import BODY, DelayedEndpoint


class DelayedResource(DelayedEndpoint):
    endpoint = "delay"

    def _delayedRender(self, request, ticket):
        if ticket.clientGone:
            ticket.end("wasted")
            return
        finishWith(request, BODY)
        ticket.end("completed")

    def renderDelayed(self, request, seconds, ticket):
        self.reactor.callLater(seconds, self._delayedRender, request, ticket)
        request.notifyFinish().addErrback(ticket.clientLeft)
        return NOT_DONE_YET
