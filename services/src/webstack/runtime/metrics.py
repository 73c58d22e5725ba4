# -*- test-case-name: tests.test_channel -*-
"""
Prometheus metrics every service exposes at C{/metrics}.

Each service has its own L{CollectorRegistry} (not prometheus_client's global
one), so tests can build several services in one process and read each one's
figures alone.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.values import MutexValue
from twisted.web.resource import Resource

# Request latencies from a cached file to a 60-second delayed response.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip

ABORTED_STATUS = "499"
"""
The status label of a request whose client went away before its response was
complete (nginx's convention; no such status is ever sent).
"""

LABELLED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
"""
The methods that are their own label; any other is C{"other"}.  A method is
any token a client likes, and each label set is kept for the life of the
process: 300 made-up methods would be 300 series in every scrape.
"""


def methodLabel(method: str) -> str:
    """
    C{method} as a metric label: itself if it is one of L{LABELLED_METHODS},
    else C{"other"}.
    """
    return method if method in LABELLED_METHODS else "other"


def _lockFree(value) -> bool:
    """
    Whether C{value} (what a prometheus_client metric keeps its number in)
    is this process's own float behind a lock, which L{adder} and
    L{observer} may add to directly.
    """
    return type(value) is MutexValue and isinstance(getattr(value, "_value", None), float)


def _inSharedFile(value) -> bool:
    """
    Whether C{value} is kept in a file that several workers share
    (prometheus_client's multiprocess mode: a float of this process's, at
    its own place in the process's memory-mapped file), which L{adder} and
    L{observer} may write to directly.
    """
    if getattr(value, "_multiprocess", False) is not True:
        return False
    file = getattr(value, "_file", None)
    return (
        isinstance(getattr(value, "_value", None), float)
        and isinstance(getattr(file, "_positions", None), dict)
        and getattr(value, "_key", None) in file._positions
        and hasattr(file, "_m")
    )


_TWO_DOUBLES = struct.Struct("dd").pack
"""
How a value and its timestamp are kept in a shared file.
"""


def _direct(value) -> Callable[[float], None] | None:
    """
    A function that adds to C{value} what its C{inc} would, without what
    the reactor's thread does not need, or C{None} if C{value} is kept
    where this version of prometheus_client was not known to keep it:

      - a value of this process alone is added to without its lock.  The
        reactor's thread is the only one counting and the one that renders
        C{/metrics}.  The lock's two C calls on each of a request's eight
        additions were 3.7% of a proxied request's instructions
        (callgrind);
      - a value in the file the workers share is added to and written to
        its place there, the same 16 bytes by the same slice assignment as
        C{inc} (whole, never a half-written double for a reader), without
        its lock, without its check that the process has not forked since
        the file was opened (a C{getpid} system call on every addition: 7%
        of a front worker's CPU, py-spy), and without its three calls in
        Python: 7.4% fewer instructions per proxied request for a front
        worker (callgrind).  A worker is started by exec, never forked, and
        counts on the reactor's thread only.  Its place in the file never
        moves; the mapping may be replaced as the file grows, so it is
        looked up on each write.
    """
    if _lockFree(value):

        def add(amount: float) -> None:
            value._value += amount

        return add
    if _inSharedFile(value):
        file = value._file
        start = file._positions[value._key]
        end = start + 16

        def write(amount: float) -> None:
            value._value += amount
            file._m[start:end] = _TWO_DOUBLES(value._value, 0.0)

        return write
    return None


def adder(metric) -> Callable[[float], None]:
    """
    A function that adds to C{metric}, a counter or gauge (or a labelled
    child of one), for the reactor's thread: what the public C{inc}/C{dec}
    do, without their checks, which can only fail when the metric is made
    (labels missing, a C{mostrecent} gauge), and without the lock and the
    fork check of the value itself (L{_direct}).  The same value and the
    same exposition.  An amount below zero is the caller's business: only
    gauges get one.

    Should a version of prometheus_client keep its value elsewhere, this
    falls back to the public method.
    """
    add = _direct(getattr(metric, "_value", None))
    return add if add is not None else metric.inc


def observer(histogram) -> Callable[[float], None]:
    """
    A function that observes an amount in C{histogram} (a labelled child),
    for the reactor's thread: what C{Histogram.observe} does without an
    exemplar, finding the bucket by bisection rather than by a loop in
    Python, and adding as L{adder} does.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    sumValue = getattr(histogram, "_sum", None)
    values = list(getattr(histogram, "_buckets", ()))
    if not bounds or len(values) != len(bounds):
        return histogram.observe
    if _lockFree(sumValue) and all(_lockFree(b) for b in values):
        # Inline, as this is every request's (two calls fewer).

        def observe(amount: float) -> None:
            sumValue._value += amount
            # The first bucket whose bound is at least the amount, as
            # Histogram.observe picks it ("amount <= bound"); the last is
            # +Inf.
            values[bisect_left(bounds, amount)]._value += 1

        return observe
    total = _direct(sumValue)
    buckets = [_direct(b) for b in values]
    if total is None or None in buckets:
        return histogram.observe

    def observeShared(amount: float) -> None:
        total(amount)
        buckets[bisect_left(bounds, amount)](1)

    return observeShared


class HTTPMetrics:
    """
    The request metrics of one service, labelled by route (a bounded set of
    path prefixes, see L{webstack.runtime.site.RouteLabeler}).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route, method (GET HEAD POST PUT DELETE"
            " OPTIONS PATCH or other) and status (499: the client went away first).",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from a request's head being parsed to its response being"
            " finished or abandoned, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inFlight = Gauge(
            "http_requests_in_flight",
            "Requests received whose response is not finished yet.",
            registry=registry,
            # With several workers: the sum over the live ones.
            multiprocess_mode="livesum",
        )
        self.refused = Counter(
            "http_requests_refused_total",
            "Requests refused before reaching a resource, by reason"
            " (head_timeout, body_timeout, header_too_large, body_too_large).",
            ["reason"],
            registry=registry,
        )
        self.openConnections = Gauge(
            "http_open_connections",
            "Client connections currently open.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connectionsRefused = Counter(
            "http_connections_refused_total",
            "Connections closed as soon as accepted: max_connections were open.",
            registry=registry,
        )
        self.writeTimeouts = Counter(
            "http_write_timeouts_total",
            "Connections aborted because the client read nothing of a response"
            " for write_timeout seconds.",
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], tuple] = {}
        self._inFlight = adder(self.inFlight)

    def received(self) -> None:
        """
        Count one request in flight, until L{observe} counts it done.
        """
        self._inFlight(1)

    def observe(self, route: str, method: str, status: str, seconds: float) -> None:
        """
        Count one finished (or abandoned) request.  The labelled children are
        looked up once per label set (C{labels()} on every request would cost
        more than the counting) and added to directly (see L{adder}).
        """
        if method not in LABELLED_METHODS:
            method = "other"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                adder(self.requests.labels(route, method, status)),
                observer(self.latency.labels(route)),
            )
        self._inFlight(-1)
        children[0](1)
        children[1](seconds)


class MetricsResource(Resource):
    """
    The Prometheus text exposition of a registry.  Rendering is cheap and
    synchronous, so it runs on the reactor thread (prometheus_client's own
    Twisted resource needlessly goes through WSGI and a thread pool).
    """

    isLeaf = True

    def __init__(
        self, registry: CollectorRegistry, multiprocessDir: str | None = None
    ) -> None:
        super().__init__()
        self._registry = registry
        if multiprocessDir is not None:
            self._registry = WorkersView(registry, multiprocessDir)

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest(self._registry)


class WorkersView:
    """
    What one of several workers (L{webstack.runtime.workers}) exposes: the
    counters, histograms and gauges of every worker, summed from the files
    of prometheus_client's multiprocess mode in C{path} (each gauge as its
    C{multiprocess_mode} says), and then the families only this process's
    C{registry} has: custom collectors read when scraped, which give this
    worker's own view.
    """

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        self._registry = registry
        self._path = path

    def collect(self):
        from prometheus_client.multiprocess import MultiProcessCollector

        # This process's registry first: a collector there may bring this
        # worker's gauges up to date as it is read (the front's do), and the
        # files must be read after that.
        own = list(self._registry.collect())
        summed = list(MultiProcessCollector(None, self._path).collect())
        names = {family.name for family in summed}
        yield from summed
        for family in own:
            if family.name not in names:
                yield family
