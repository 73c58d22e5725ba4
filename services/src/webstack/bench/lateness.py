"""
Lateness under many held requests: N clients, each on its own connection,
each asking once for C{/async/delay?seconds=2}, starting evenly over
N / 1000 seconds.  A request's lateness is how much longer than the 2
seconds it took, from the moment that client started connecting to the
moment the end of the body arrived: queueing at accept, in the proxy and at
the backend all show in it.

The clients must not be what is measured, so they are split over several
processes (C{spawn}ed, each with its own asyncio loop and plain protocols,
no streams), every one starting its share of the schedule from one common
monotonic instant (C{CLOCK_MONOTONIC} is the same in every process).  How
late each client itself started against its schedule is reported too: a
large start lag means the load generator, not the server, was behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from dataclasses import dataclass, field

from .load import percentile

REQUEST = "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
BODY_END = b"</body></html>"


@dataclass
class _Outcome:
    """
    One client's request, as seen by the client.
    """

    startedAt: float = 0.0
    doneAt: float | None = None
    status: bytes = b""
    failure: str | None = None


class _Exchange(asyncio.Protocol):
    """
    Send the request, note when the end of the body arrives, wait for the
    server to close (the request says C{Connection: close}).
    """

    def __init__(self, request: bytes, outcome: _Outcome, closed: asyncio.Future) -> None:
        self.request = request
        self.outcome = outcome
        self.closed = closed
        self.received = b""

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.outcome.doneAt is None and BODY_END in self.received:
            self.outcome.doneAt = time.monotonic()

    def connection_lost(self, exc) -> None:
        outcome = self.outcome
        outcome.status = self.received[:12]
        if outcome.doneAt is None:
            outcome.failure = "closed before the body" if self.received else "closed, nothing received"
        elif not self.received.startswith(b"HTTP/1.1 200"):
            outcome.failure = self.received[:12].decode("ascii", "replace")
            outcome.doneAt = None
        if not self.closed.done():
            self.closed.set_result(None)


async def _one(loop, port: int, request: bytes, outcome: _Outcome) -> None:
    outcome.startedAt = time.monotonic()
    closed = loop.create_future()
    try:
        transport, _ = await loop.create_connection(
            lambda: _Exchange(request, outcome, closed), "127.0.0.1", port
        )
    except OSError as e:
        outcome.failure = type(e).__name__
        return
    try:
        await closed
    finally:
        transport.abort()


async def _schedule(port, path, indices, t0, rate, deadline) -> tuple[list[_Outcome], list[float]]:
    """
    Start the requests C{indices} of the common schedule (request I at
    C{t0 + I / rate}); wait for all of them until C{deadline}.
    """
    loop = asyncio.get_running_loop()
    request = REQUEST.format(path=path).encode("ascii")
    outcomes, lags, tasks = [], [], []
    for i in indices:
        at = t0 + i / rate
        wait = at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        lags.append(max(0.0, time.monotonic() - at))
        outcome = _Outcome()
        outcomes.append(outcome)
        tasks.append(loop.create_task(_one(loop, port, request, outcome)))
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for outcome in outcomes:
        if outcome.doneAt is None and outcome.failure is None:
            outcome.failure = "timeout"
    return outcomes, lags


def _clientProcess(conn, port, path, total, processes, index, rate, deadlineAfter) -> None:
    """
    One client process: every C{processes}-th request of the schedule,
    from request C{index} on.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conn.send("ready")
    if not conn.poll(120):
        return
    t0 = conn.recv()
    deadline = t0 + total / rate + deadlineAfter
    outcomes, lags = asyncio.run(
        _schedule(port, path, range(index, total, processes), t0, rate, deadline)
    )
    conn.send(
        {
            "starts": [o.startedAt for o in outcomes],
            "ends": [o.doneAt for o in outcomes],
            "failures": [o.failure for o in outcomes if o.failure],
            "lags": lags,
        }
    )
    conn.close()


@dataclass
class LatenessRun:
    """
    Every client's start and end (monotonic seconds; end C{None} for a
    failure), how late each started, and what failed.
    """

    count: int
    delay: float
    rate: float
    starts: list[float] = field(default_factory=list)
    ends: list[float | None] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, kind: str, n: int = 1) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + n

    def summary(self) -> dict:
        lateness = [
            (end - start - self.delay) * 1000
            for start, end in zip(self.starts, self.ends)
            if end is not None
        ]
        lags = [lag * 1000 for lag in self.lags]
        return {
            "clients": self.count,
            "over_seconds": self.count / self.rate,
            "succeeded": len(lateness),
            "failed": self.count - len(lateness),
            "failures": self.failures,
            "lateness_p50_ms": percentile(lateness, 50),
            "lateness_p99_ms": percentile(lateness, 99),
            "lateness_max_ms": max(lateness) if lateness else None,
            "client_start_lag_p99_ms": percentile(lags, 99),
            "client_start_lag_max_ms": max(lags) if lags else None,
            "peak_in_flight": peakOverlap(self.starts, self.ends),
        }


def peakOverlap(starts: list[float], ends: list[float | None]) -> int:
    """
    The most requests open at one instant (failures left out).
    """
    events = []
    for start, end in zip(starts, ends):
        if end is not None:
            events.append((start, 1))
            events.append((end, -1))
    events.sort()
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def runLateness(
    port: int,
    path: str,
    count: int,
    *,
    delay: float = 2.0,
    rate: float = 1000.0,
    processes: int = 2,
    timeout: float = 30.0,
) -> LatenessRun:
    """
    C{count} clients of C{path} on C{port} (whose answer takes C{delay}
    seconds), started at C{rate} per second over C{processes} client
    processes; each client gives up C{timeout} seconds after the last one
    started.
    """
    context = multiprocessing.get_context("spawn")
    run = LatenessRun(count=count, delay=delay, rate=rate)
    clients = []
    try:
        for index in range(processes):
            parentEnd, childEnd = context.Pipe()
            process = context.Process(
                target=_clientProcess,
                args=(childEnd, port, path, count, processes, index, rate, delay + timeout),
                daemon=True,
            )
            process.start()
            childEnd.close()
            clients.append((process, parentEnd))
        for process, conn in clients:
            if not conn.poll(60) or conn.recv() != "ready":
                raise RuntimeError("a lateness client process did not start")
        t0 = time.monotonic() + 0.2
        for _, conn in clients:
            conn.send(t0)
        waitUntil = t0 + count / rate + delay + timeout + 15
        for index, (process, conn) in enumerate(clients):
            share = len(range(index, count, processes))
            try:
                ready = conn.poll(max(0.0, waitUntil - time.monotonic()))
                part = conn.recv() if ready else None
            except (EOFError, OSError):
                part = None
            if part is None:
                run.fail("client process lost", share)
                run.starts.extend([0.0] * share)
                run.ends.extend([None] * share)
                continue
            run.starts.extend(part["starts"])
            run.ends.extend(part["ends"])
            run.lags.extend(part["lags"])
            for kind in part["failures"]:
                run.fail(kind)
    finally:
        for process, conn in clients:
            conn.close()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
    return run
