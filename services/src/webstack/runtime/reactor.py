# -*- test-case-name: tests.test_reactor -*-
"""
The reactor every webstack process runs: Twisted's epoll reactor without a
logging context around each socket event (C{twistd --reactor=webstack}).

For every descriptor that is ready, Twisted's L{EPollReactor.doPoll} calls
C{log.callWithLogger}, which asks the protocol for its C{logPrefix()} and
runs the read or write inside a context naming it C{system}: a call, a dict
and a context switch per event, for a key that only legacy C{log.msg} lines
read and that the services' JSON lines leave out
(L{webstack.runtime.logs}).  On a proxied request, which is four socket
events at the front (a read and a write on each side), that was 5.1% of the
front's instructions and 3.4% of the async service's (C{make
bench-instructions}; docs/benchmarks.md).  This reactor calls the read or
write directly, and logs whatever escapes it as C{callWithLogger} did, so
one bad descriptor still does not stop the loop.

It also runs calls at the end of each turn (L{LeanEPollReactor.callAtEndOfTurn}),
once the turn's ready descriptors are handled, without a timer: a
coalescing transport (L{webstack.runtime.writes}) sends what the turn wrote
that way.  Through C{callLater(0)}, each turn made a L{DelayedCall} and
pushed it onto and popped it off the timer heap, whose comparisons are
Python (C{DelayedCall.__lt__}), among the idle timers of every connection.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.logger import Logger

_log = Logger(namespace="webstack.runtime.reactor")


class LeanEPollReactor(epollreactor.EPollReactor):
    """
    L{EPollReactor}, each ready descriptor handled without a log context,
    and calls at the end of each turn.
    """

    def __init__(self) -> None:
        self._endOfTurn: list[Callable[[], object]] = []
        super().__init__()

    def callAtEndOfTurn(self, call: Callable[[], object]) -> None:
        """
        Call C{call} once, at the end of this turn of the loop: after the
        descriptors found ready are handled, or, if it is asked for outside
        their handling (by a timer, by what C{callFromThread} was given, or
        before the reactor runs), before the reactor next waits for any.
        For the reactor's thread only, like C{callLater}.  What one call
        raises is logged, and the others still run.
        """
        self._endOfTurn.append(call)

    def _runEndOfTurn(self) -> None:
        calls, self._endOfTurn = self._endOfTurn, []
        for call in calls:
            try:
                call()
            except KeyboardInterrupt:
                raise
            except BaseException:
                _log.failure("unhandled error at the end of a turn in {call!r}", call=call)

    def doPoll(self, timeout):
        if self._endOfTurn:
            # Asked for by a timer (or by what callFromThread was given) in
            # this iteration's runUntilCurrent: run before waiting, not after.
            self._runEndOfTurn()
            if self._endOfTurn:
                timeout = 0  # more were asked for by those: no waiting
        if timeout is None:
            timeout = -1  # wait until something is ready
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue  # removed by an earlier event of this same poll
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                _log.failure(
                    "unhandled error handling {selectable!r}", selectable=selectable
                )
        if self._endOfTurn:
            self._runEndOfTurn()

    doIteration = doPoll


def install() -> LeanEPollReactor:
    """
    Install L{LeanEPollReactor} as the global reactor (what C{twistd
    --reactor=webstack} calls).
    """
    reactor = LeanEPollReactor()
    installReactor(reactor)
    return reactor
