# -*- test-case-name: tests.test_wsgi_units -*-
"""
The WSGI calls handed to a thread pool: bounded, and looked at once more
when a thread takes each one up.

L{twisted.python.threadpool.ThreadPool} queues whatever it is given, without
a bound, and runs it whatever happened meanwhile.  Behind
L{twisted.web.wsgi.WSGIResource}, 40 clients that ask for a 5-second page
and leave after half a second cost 40 calls of 5 s each, run one after the
other on the pool's threads for requests nobody waits for, and every client
after them waits behind all of it (19.5 s on ten threads); a stop then
joins the whole backlog.  L{BoundedCalls} keeps its own count instead:

  - at most C{pool.max + queueMax} calls are running or waiting at once; a
    request beyond that is refused at once (L{BoundedCalls.hasRoom} says so,
    the resource answers 503), which tells the client to come back rather
    than holding its connection for a turn that may come too late;
  - a call whose client has gone by the time a thread takes it up is not
    run, nor is one still waiting when the service stops
    (L{BoundedCalls.close}); either is counted in
    C{wsgi_skipped_total{reason}}.

The count is kept on the reactor thread: a pool thread reports a call done
with C{callFromThread}.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter
from twisted.internet.defer import Deferred, succeed
from twisted.python.threadpool import ThreadPool

CLIENT_GONE = "client_gone"
STOPPING = "stopping"


class BoundedCalls:
    """
    Calls on C{pool}, at most C{pool.max + queueMax} at once (running or
    waiting for a thread).

    @ivar pool: the thread pool the calls run on.
    @ivar admitted: the calls handed to the pool and not yet done (run or
        skipped); read and written on the reactor thread only.
    @ivar closed: set by L{close}: calls not started yet will not be.
    @ivar skipped: how many calls were skipped, by reason (as in the
        metrics), for the log line of a stop.
    """

    def __init__(
        self,
        reactor,
        pool: ThreadPool,
        queueMax: int,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if queueMax < 0:
            raise ValueError(f"queueMax must be at least 0, not {queueMax!r}")
        self._reactor = reactor
        self.pool = pool
        self.queueMax = queueMax
        self.admitted = 0
        self.closed = False
        self.skipped = {CLIENT_GONE: 0, STOPPING: 0}
        self._idle: list[Deferred[None]] = []
        self._skipped = Counter(
            "wsgi_skipped",
            "WSGI calls never run: their client left while they waited for a"
            " thread (client_gone), or the service stopped first (stopping).",
            ["reason"],
            registry=registry,
        )
        for reason in (CLIENT_GONE, STOPPING):
            self._skipped.labels(reason)

    @property
    def limit(self) -> int:
        """
        The most calls running or waiting at once.
        """
        return self.pool.max + self.queueMax

    def hasRoom(self) -> bool:
        """
        Whether one more call may be handed to the pool now.
        """
        return not self.closed and self.admitted < self.limit

    def run(self, call: Callable[[], object], isWanted: Callable[[], bool]) -> None:
        """
        Hand C{call} to the pool (the caller has checked L{hasRoom}).  When a
        thread takes it up, it runs only if C{isWanted()} still says so and
        the calls are not closed.  Call on the reactor thread.
        """
        self.admitted += 1
        self.pool.callInThread(self._takeUp, call, isWanted)

    def _takeUp(self, call: Callable[[], object], isWanted: Callable[[], bool]) -> None:
        """
        On a pool thread: run C{call}, or skip it, then report to the
        reactor thread.
        """
        skipped = None
        try:
            if self.closed:
                skipped = STOPPING
            elif not isWanted():
                skipped = CLIENT_GONE
            else:
                call()
        finally:
            self._reactor.callFromThread(self._done, skipped)

    def _done(self, skipped: str | None) -> None:
        self.admitted -= 1
        if skipped is not None:
            self.skipped[skipped] += 1
            self._skipped.labels(skipped).inc()
        if self.admitted == 0 and self._idle:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def close(self) -> Deferred[None]:
        """
        Start no call from now on (those waiting are skipped as threads take
        them up); return a Deferred that fires once no call is left running
        or waiting.
        """
        self.closed = True
        if self.admitted == 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d
