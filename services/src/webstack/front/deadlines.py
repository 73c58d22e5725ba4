# -*- test-case-name: tests.test_front_units -*-
"""
One timer per route for the response-head timeout of all its requests.

A C{callLater} per request (and its C{cancel} when the head arrives, nearly
always long before) costs a L{DelayedCall}, a heap push and, once enough are
cancelled, a heap rebuild: a few percent of the front's CPU per request.  A
route's timeout is the same for every request, so its requests' deadlines
come in the order the requests were sent: a dict (insertion-ordered) holds
them, O(1) to add and to drop, and a single timer waits for the oldest.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from twisted.logger import Logger

log = Logger()


class Deadlines:
    """
    Call C{expired(item)} for every item added and not dropped within
    C{timeout} seconds.

    @ivar slack: the timer is never set closer than this to the previous
        one, so a route answering a steady stream of requests is checked at
        most C{1 / slack} times a second (an item may then expire up to
        C{slack} seconds late).
    """

    def __init__(
        self, reactor, timeout: float, expired: Callable[[Hashable], None], slack: float = 0.05
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._expired = expired
        self._slack = slack
        self._waiting: dict[Hashable, float] = {}
        self._timer = None

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, item: Hashable) -> None:
        self._waiting[item] = self._reactor.seconds() + self._timeout
        if self._timer is None:
            self._timer = self._reactor.callLater(self._timeout, self._check)

    def discard(self, item: Hashable) -> None:
        waiting = self._waiting
        waiting.pop(item, None)
        if not waiting and self._timer is not None:
            # Nothing left to wait for: leave no timer behind.
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        now = self._reactor.seconds()
        waiting = self._waiting
        while waiting:
            item, deadline = next(iter(waiting.items()))
            if deadline > now:
                # An expiry may have added an item (a pipelined request), and
                # with it a timer for later than this one: one timer, for
                # the oldest.
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._reactor.callLater(
                    max(deadline - now, self._slack), self._check
                )
                return
            del waiting[item]
            try:
                self._expired(item)
            except Exception:
                # The others are still due.
                log.failure("expiring {item!r} failed", item=item)

    def stop(self) -> None:
        """
        Forget every item and the timer.
        """
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
