# -*- test-case-name: tests.test_auth_units -*-
"""
The threads that check passwords, and how many checks may wait for them.

bcrypt is slow on purpose and runs on a thread.  On the reactor's shared
pool (ten threads, which DNS lookups and everything else deferring to
threads also use), a burst of Basic logins queued without limit: under load
every check waited behind all the others, for tens of seconds.  Here the
checks have a L{ThreadPool} of their own, sized to the CPUs they may use,
started and stopped with the service (L{ThreadPoolService}), and at most
C{waiting} checks wait for a thread: one more is refused at once
(L{ChecksBusy}, answered 503 with C{Retry-After}) rather than left to wait
for ever.  The count is kept on the reactor's thread, where calls are made
and their results arrive, so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


class ChecksBusy(Exception):
    """
    Every check thread is busy and the most checks allowed already wait.

    @ivar retryAfter: seconds after which the client may try again.
    """

    def __init__(self, retryAfter: int) -> None:
        super().__init__(f"password checks busy; retry after {retryAfter} s")
        self.retryAfter = retryAfter


class BoundedCalls:
    """
    Run calls through C{inThread} (a L{deferToThreadPool}, bound), at most
    C{threads + waiting} of them at once; beyond, fail with L{ChecksBusy}.
    """

    retryAfter = 1

    def __init__(self, inThread: Callable[..., Deferred], threads: int, waiting: int) -> None:
        self._inThread = inThread
        self.threads = threads
        self.limit = threads + waiting
        self.pending = 0

    def __call__(self, f, *args) -> Deferred:
        if self.pending >= self.limit:
            return fail(ChecksBusy(self.retryAfter))
        self.pending += 1
        d = self._inThread(f, *args)
        d.addBoth(self._done)
        return d

    def _done(self, result):
        self.pending -= 1
        return result


def checkPool(reactor, threads: int, waiting: int) -> tuple[BoundedCalls, ThreadPool]:
    """
    A pool of C{threads} check threads, and the bounded way to call on it.
    """
    pool = ThreadPool(threads, threads, name="auth-check")

    def inThread(f, *args):
        return deferToThreadPool(reactor, pool, f, *args)

    return BoundedCalls(inThread, threads, waiting), pool


class ThreadPoolService(Service):
    """
    Start a thread pool with the service; stop it (its running checks
    finish first) when the service stops.
    """

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


class CheckPoolCollector(Collector):
    """
    The check pool's size and how many checks run or wait, in C{/metrics}.
    """

    def __init__(self, calls: BoundedCalls) -> None:
        self.calls = calls

    def collect(self):
        calls = self.calls
        for name, doc, value in (
            ("auth_check_threads", "Threads that check passwords.", calls.threads),
            ("auth_checks_pending", "Password checks running or waiting for a thread.", calls.pending),
            ("auth_checks_limit", "Most password checks running or waiting; more get 503.", calls.limit),
        ):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
