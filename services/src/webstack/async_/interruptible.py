# -*- test-case-name: tests.test_async -*-
"""
Seed 000, "interrupted responses": C{request.notifyFinish()} fires its errback
when the client goes away, and the errback cancels the pending delayed call,
so the response is never generated.

Served at C{/async/interruptible?seconds=S}.  Through the front this holds end
to end: a client that leaves the front makes the front abort its upstream
request, this resource's C{notifyFinish} fires, and the work is cancelled.

What changed from the seed: the reactor is passed in, S comes from the query
string, the body is bytes and goes with its C{Content-Length}, and
C{call.cancel()} is guarded, because the client may leave in the same
reactor turn in which the call runs.
"""

from twisted.web.server import NOT_DONE_YET

from webstack.runtime.site import finishWith

from .base import BODY, DelayedEndpoint


class InterruptibleDelayedResource(DelayedEndpoint):
    endpoint = "interruptible"

    def _delayedRender(self, request, ticket):
        finishWith(request, BODY)
        ticket.end("completed")

    def _responseFailed(self, err, call, ticket):
        if call.active():
            call.cancel()
            ticket.end("cancelled")

    def renderDelayed(self, request, seconds, ticket):
        call = self.reactor.callLater(seconds, self._delayedRender, request, ticket)
        request.notifyFinish().addErrback(self._responseFailed, call, ticket)
        return NOT_DONE_YET
