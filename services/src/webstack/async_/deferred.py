# -*- test-case-name: tests.test_async -*-
"""
Seed 003, "asynchronous responses via Deferred": the same delayed response as
seed 001, with C{task.deferLater} and a callback instead of C{callLater}.

Served at C{/async/deferred?seconds=S}.  Replace C{deferLater} with any other
Deferred-returning API and this is how a real resource looks.

What changed from the seed: the reactor is passed in, S comes from the query
string, the body goes with its C{Content-Length}, and, as in
L{webstack.async_.delay}, a client that left is noted so the callback
writes nothing and counts the work as I{wasted}.  (Cancelling
the Deferred from C{notifyFinish} would cancel the delay too: that is what
the front does to its upstream request, see L{webstack.front.proxy}.)
"""

from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET

from webstack.runtime.site import finishWith

from .base import BODY, DelayedEndpoint


class DeferredDelayedResource(DelayedEndpoint):
    endpoint = "deferred"
    log = Logger()

    def _delayedRender(self, request, ticket):
        if ticket.clientGone:
            ticket.end("wasted")
            return
        finishWith(request, BODY)
        ticket.end("completed")

    def renderDelayed(self, request, seconds, ticket):
        d = deferLater(self.reactor, seconds, lambda: request)
        d.addCallback(self._delayedRender, ticket)
        d.addErrback(lambda f: self.log.failure("deferred render failed", f))
        request.notifyFinish().addErrback(ticket.clientLeft)
        return NOT_DONE_YET
