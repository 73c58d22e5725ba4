# -*- test-case-name: tests.test_async -*-
"""
What happened to every delayed request, per endpoint: the figures a load test
reads to check that each client abort reached the backend.

  - C{started}: requests whose delayed work was scheduled;
  - C{completed}: responses delivered in full;
  - C{cancelled}: work cancelled because the client went away (seeds 000, 002);
  - C{wasted}: work that ran to the end after its client had gone (what the
    naive seeds 001 and 003 do, and what must stay 0 on the interruptible
    endpoints);
  - C{in_flight}: started and not yet completed, cancelled or wasted.

One L{DelayStats} is the single source for both C{/async/stats} (JSON) and
C{/metrics} (a Prometheus collector reading the same numbers).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.web.resource import Resource

OUTCOMES = ("completed", "cancelled", "wasted")


@dataclass
class Counts:
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    wasted: int = 0

    @property
    def in_flight(self) -> int:
        return self.started - self.completed - self.cancelled - self.wasted

    def asJSON(self) -> dict[str, int]:
        return {**asdict(self), "in_flight": self.in_flight}


class Ticket:
    """
    One delayed request's entry in the stats; it ends exactly once.
    """

    __slots__ = ("_counts", "ended", "clientGone", "requestId")

    def __init__(self, counts: Counts, requestId: str = "-") -> None:
        self._counts = counts
        self.requestId = requestId
        self.ended: str | None = None
        self.clientGone = False
        counts.started += 1

    def clientLeft(self, reason=None) -> None:
        """
        Note that the client went away (usable as a C{notifyFinish} errback).
        """
        self.clientGone = True

    def end(self, outcome: str) -> None:
        if self.ended is None:
            self.ended = outcome
            setattr(self._counts, outcome, getattr(self._counts, outcome) + 1)


class DelayStats(Collector):
    """
    Counts per endpoint, readable as JSON and collected by Prometheus.
    """

    def __init__(self, endpoints) -> None:
        self.endpoints = {name: Counts() for name in endpoints}

    def start(self, endpoint: str, requestId: str = "-") -> Ticket:
        return Ticket(self.endpoints[endpoint], requestId)

    def totals(self) -> Counts:
        total = Counts()
        for counts in self.endpoints.values():
            for outcome in ("started", *OUTCOMES):
                setattr(total, outcome, getattr(total, outcome) + getattr(counts, outcome))
        return total

    def asJSON(self) -> dict[str, object]:
        return {
            "replica": socket.gethostname(),
            "pid": os.getpid(),
            "endpoints": {n: c.asJSON() for n, c in self.endpoints.items()},
            "totals": self.totals().asJSON(),
        }

    def collect(self):
        started = CounterMetricFamily(
            "async_delayed_started",
            "Delayed requests whose work was scheduled, by endpoint.",
            labels=["endpoint"],
        )
        ended = CounterMetricFamily(
            "async_delayed_ended",
            "Delayed requests ended, by endpoint and outcome (completed,"
            " cancelled: client left and the work was cancelled, wasted: the"
            " work ran on after the client left).",
            labels=["endpoint", "outcome"],
        )
        inFlight = GaugeMetricFamily(
            "async_delayed_in_flight",
            "Delayed requests started and not yet ended, by endpoint.",
            labels=["endpoint"],
        )
        for name, counts in self.endpoints.items():
            started.add_metric([name], counts.started)
            for outcome in OUTCOMES:
                ended.add_metric([name, outcome], getattr(counts, outcome))
            inFlight.add_metric([name], counts.in_flight)
        return [started, ended, inFlight]


class StatsResource(Resource):
    """
    C{GET /async/stats}: the counts as JSON, for people and load tests.
    """

    isLeaf = True

    def __init__(self, stats: DelayStats) -> None:
        super().__init__()
        self._stats = stats

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self._stats.asJSON(), indent=1).encode("utf-8") + b"\n"
