# -*- test-case-name: tests.test_async -*-
"""
Seed 002, "logging errors": the interrupted response of seed 000, whose
errback also logs the failure with a message saying where it came from.

Served at C{/async/logged?seconds=S}.  As in the seed, the only change from
seed 000 is C{_responseFailed}.

What changed from the seed: C{twisted.python.log.err} is the legacy API;
C{Logger.failure} from C{twisted.logger} is its modern form, and it takes
fields, so the JSON log line carries the request id (the front forwards it)
and how much of the delay the cancellation saved.  A client leaving is not a server fault, so
it is logged at level C{warn}, not C{critical}.
"""

from twisted.logger import Logger, LogLevel

from .interruptible import InterruptibleDelayedResource


class LoggedDelayedResource(InterruptibleDelayedResource):
    endpoint = "logged"
    log = Logger()

    def _responseFailed(self, failure, call, ticket):
        remaining = call.getTime() - self.reactor.seconds() if call.active() else 0.0
        super()._responseFailed(failure, call, ticket)
        self.log.failure(
            "Async response demo interrupted response",
            failure,
            level=LogLevel.warn,
            event="interrupted",
            request_id=ticket.requestId,
            saved_seconds=round(remaining, 6),
        )
