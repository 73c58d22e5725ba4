# -*- test-case-name: tests.test_front_units -*-
"""
The front's own metrics, beside the request metrics every service has.
"""

from __future__ import annotations

import glob
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from webstack.runtime.metrics import LATENCY_BUCKETS, adder, observer

_SHARED = "PROMETHEUS_MULTIPROC_DIR" in os.environ
"""
Whether this process is one of several workers sharing prometheus_client's
multiprocess files (set in a worker's environment before it starts).
"""


class ProxyMetrics:
    """
    How each proxied request ended, how long its response head took, and how
    often a request was tried on another replica.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.exchanges = Counter(
            "front_upstream_exchanges_total",
            "Proxied requests by route and how they ended (response: forwarded"
            " in full; client_gone_*: the client left and the upstream request"
            " was cancelled; the others are errors).",
            ["route", "outcome"],
            registry=registry,
        )
        self.responseSeconds = Histogram(
            "front_upstream_response_head_seconds",
            "Time from sending a request upstream to its response head.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "front_upstream_retries_total",
            "Requests tried again on another replica after one refused.",
            ["route"],
            registry=registry,
        )
        self._adders: dict[tuple, object] = {}

    def _add(self, metric, *labels):
        # The labelled child's own adder, found once per label set: labels()
        # and inc() on every request cost more than the counting itself.
        key = (id(metric), *labels)
        add = self._adders.get(key)
        if add is None:
            child = metric.labels(*labels)
            add = self._adders[key] = (
                observer(child) if isinstance(metric, Histogram) else adder(child)
            )
        return add

    def declare(self, routes) -> None:
        """
        Make each route's counters of responses and cancellations at 0, so
        that a rate over them counts their first increase (a series that
        appears at 1 has no increase to Prometheus).
        """
        for route in routes:
            for outcome in ("response", "client_gone_before_response", "client_gone_during_body"):
                self.exchanges.labels(route, outcome)

    def outcome(self, route: str, outcome: str) -> None:
        self._add(self.exchanges, route, outcome)(1)

    def headSeconds(self, route: str, seconds: float) -> None:
        self._add(self.responseSeconds, route)(seconds)

    def retried(self, route: str) -> None:
        self._add(self.retries, route)(1)


class ReplicaGauges:
    """
    Every replica as this process sees it (known, available, requests in
    flight), published as gauges by L{publish}: every second, and before the
    landing page or C{/-/metrics} is read.

    Gauges rather than a collector read when scraped, because with several
    workers (L{webstack.runtime.workers}) each one knows only its own
    requests and ejections: prometheus_client's multiprocess files then
    combine the workers' values, in flight summed and availability the
    lowest (a replica counts as available only while every worker sends to
    it), so whichever worker answers shows the whole front.
    """

    def __init__(self, registry: CollectorRegistry, replicaSets) -> None:
        self._sets = replicaSets
        self._published: dict[str, set[str]] = {}
        # Registered before the gauges, so a scrape publishes, then reads.
        registry.register(_PublishFirst(self))
        self.known = Gauge(
            "front_replicas",
            "Replicas known per route.",
            ["route"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.available = Gauge(
            "front_replicas_available",
            "Replicas neither ejected nor failing their probe, per route (with"
            " several workers: as the least hopeful worker sees it).",
            ["route"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.replicaInFlight = Gauge(
            "front_replica_in_flight",
            "Requests in flight to each replica (summed over the workers).",
            ["route", "replica"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.replicaAvailable = Gauge(
            "front_replica_available",
            "1 while a replica is sent requests (by every worker), else 0.",
            ["route", "replica"],
            registry=registry,
            multiprocess_mode="livemin",
        )

    def publish(self) -> None:
        for name, replicaSet in self._sets.items():
            status = replicaSet.status()
            self.known.labels(name).set(len(status["replicas"]))
            self.available.labels(name).set(status["available"])
            current = set()
            for replica in status["replicas"]:
                address = replica["address"]
                current.add(address)
                self.replicaInFlight.labels(name, address).set(replica["in_flight"])
                self.replicaAvailable.labels(name, address).set(
                    1 if replica["available"] else 0
                )
            for gone in self._published.get(name, set()) - current:
                if _SHARED:
                    # Shared files keep a series for good (remove() only
                    # warns): a replica that is gone reads as idle and down.
                    self.replicaInFlight.labels(name, gone).set(0)
                    self.replicaAvailable.labels(name, gone).set(0)
                else:
                    self.replicaInFlight.remove(name, gone)
                    self.replicaAvailable.remove(name, gone)
            self._published[name] = current


class _PublishFirst(Collector):
    def __init__(self, gauges: ReplicaGauges) -> None:
        self._gauges = gauges

    def describe(self):
        return []

    def collect(self):
        self._gauges.publish()
        return []


def workersView(metricsDir: str) -> tuple[int, dict[tuple[str, str], dict]]:
    """
    The replicas as all the workers sharing C{metricsDir} see them together:
    how many workers are alive, and per C{(route, address)} the requests in
    flight (summed) and whether it is available (to every worker).
    """
    from prometheus_client.multiprocess import MultiProcessCollector

    view: dict[tuple[str, str], dict] = {}
    for family in MultiProcessCollector(None, metricsDir).collect():
        if family.name == "front_replica_in_flight":
            for sample in family.samples:
                key = (sample.labels["route"], sample.labels["replica"])
                view.setdefault(key, {})["in_flight"] = int(sample.value)
        elif family.name == "front_replica_available":
            for sample in family.samples:
                key = (sample.labels["route"], sample.labels["replica"])
                view.setdefault(key, {})["available"] = sample.value >= 1
    workers = len(glob.glob(os.path.join(metricsDir, "gauge_livesum_*.db")))
    return workers, view
