# -*- test-case-name: webstack.tests.test_front_units -*-
"""
The front's own metrics, beside the request metrics every service has.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webstack.runtime.metrics import LATENCY_BUCKETS

class ProxyMetrics:
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

        self._children: dict[tuple, object] = {}

    def _child(self, metric, *labels):
        # labels() on every request costs more than the counting itself.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def outcome(self, route: str, outcome: str) -> None:
        self._child(self.exchanges, route, outcome).inc()

    def headSeconds(self, route: str, seconds: float) -> None:
        self._child(self.responseSeconds, route).observe(seconds)

    def retried(self, route: str) -> None:
        self._child(self.retries, route).inc()


class ReplicaCollector(Collector):
    """
    The replicas of every route, known and available, read when scraped.
    """

    def __init__(self, replicaSets) -> None:
        self._sets = replicaSets

    def collect(self):
        known = GaugeMetricFamily(
            "front_replicas", "Replicas known per route.", labels=["route"]
        )
        available = GaugeMetricFamily(
            "front_replicas_available",
            "Replicas neither ejected nor failing their probe, per route.",
            labels=["route"],
        )
        for name, replicaSet in self._sets.items():
            status = replicaSet.status()
            known.add_metric([name], len(status["replicas"]))
            available.add_metric([name], status["available"])
        return [known, available]
