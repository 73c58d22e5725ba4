# -*- test-case-name: tests.test_wsgi_units -*-
"""
The WSGI service's own thread pool: made, measured, started and stopped.

As the seed advises, the applications run on a L{ThreadPool} of their own,
not on the reactor's (whose size also bounds DNS lookups and everything
else that defers to threads).  Its size, busy threads and queued calls are
in C{/metrics}, so a saturated pool can be seen.

Stopping it is where Twisted's own pool would hurt: L{ThreadPool.stop}
runs every call still queued and joins every thread, on the reactor thread.
With a backlog that is the whole backlog, and a call that writes its
response meanwhile asks the blocked reactor to do it and waits for ever.
L{ThreadPoolService} instead closes the calls (those still waiting are
skipped), waits for the running ones without blocking the reactor until the
runtime's C{drain_timeout} after the stop began (plus a second for calls
whose clients the drain has just cut off), and then leaves what still runs
behind: the pool's threads are daemon threads, which do not hold the
process at exit.
"""

from __future__ import annotations

import threading

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from .calls import CLIENT_GONE, STOPPING, BoundedCalls


class DaemonThreadPool(ThreadPool):
    """
    A L{ThreadPool} of daemon threads: one still running a call that
    L{ThreadPoolService} gave up waiting for does not keep the process
    alive once the reactor has stopped.
    """

    @staticmethod
    def threadFactory(*args, **kwargs) -> threading.Thread:
        return threading.Thread(*args, daemon=True, **kwargs)


class ThreadPoolService(Service):
    """
    Start C{calls.pool} with the service; on stop, close C{calls} and wait
    for the calls still running, for a bounded time, without blocking the
    reactor (see the module's docstring).

    @cvar graceSeconds: how long past the drain deadline the calls still get:
        enough for those whose clients the drain cut off to notice and
        return.
    """

    graceSeconds = 1.0
    log = Logger()

    def __init__(self, reactor, calls: BoundedCalls, drainTimeout: float) -> None:
        self._reactor = reactor
        self.calls = calls
        self.pool = calls.pool
        self._drainTimeout = drainTimeout
        self._stopBegan: float | None = None

    def startService(self) -> None:
        super().startService()
        self._stopBegan = None
        self.pool.start()

    def stopBegins(self) -> None:
        """
        Note that the stop of the whole service begins now (the drain of its
        requests comes first): the calls get C{drainTimeout} from here.  The
        runtime calls it when its drain begins (the WSGI app's C{drainHooks});
        without it the stop's own start is taken.
        """
        if self._stopBegan is None:
            self._stopBegan = self._reactor.seconds()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.stopBegins()
        now = self._reactor.seconds()
        wait = max(self._stopBegan + self._drainTimeout - now, 0.0) + self.graceSeconds
        done: Deferred[None] = Deferred()

        def idle(_):
            if timer.active():
                timer.cancel()
                # Every thread is idle: joining them is immediate.
                self.pool.stop()
                self._stopped()
                done.callback(None)

        def giveUp():
            running = self.calls.admitted
            self.log.warn(
                "wsgi: {running} call(s) still running {wait:g} s after the"
                " drain deadline; left to end with the process",
                event="wsgi_calls_abandoned",
                running=running,
                wait=self.graceSeconds,
            )
            # Idle threads quit; the busy ones are not waited for here.
            threading.Thread(
                target=self.pool.stop, name="wsgi-pool-stop", daemon=True
            ).start()
            self._stopped()
            done.callback(None)

        timer = self._reactor.callLater(wait, giveUp)
        self.calls.close().addCallback(idle)
        return done

    def _stopped(self) -> None:
        skipped = self.calls.skipped
        self.log.info(
            "wsgi pool stopped; calls never run: {client_gone} whose client"
            " left, {stopping} still waiting at the stop",
            event="wsgi_pool_stopped",
            client_gone=skipped[CLIENT_GONE],
            stopping=skipped[STOPPING],
        )


class PoolCollector(Collector):
    """
    The pool's gauges, read when C{/metrics} is scraped.
    """

    def __init__(self, calls: BoundedCalls) -> None:
        self.calls = calls

    def collect(self):
        calls = self.calls
        pool = calls.pool
        for name, doc, value in (
            ("wsgi_pool_max_threads", "Most WSGI calls that run at once.", pool.max),
            ("wsgi_pool_threads", "Threads the pool has now.", pool.workers),
            ("wsgi_pool_busy", "Threads running a WSGI call now.", len(pool.working)),
            (
                "wsgi_pool_queued",
                "WSGI calls waiting for a free thread.",
                pool.q.qsize(),
            ),
            (
                "wsgi_pool_queue_max",
                "Most WSGI calls that may wait for a thread; more are answered 503.",
                calls.queueMax,
            ),
        ):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
