# -*- test-case-name: tests.test_dashboard -*-
"""
The front's live dashboard: C{/-/dashboard}, one chart per figure (request
rate, p99 latency, requests in flight, cancellations and 5xx answers per
second, replicas up), a line per route, drawn again every second.

Why the front serves it: the front is the one process every request crosses
and the one port an operator has, so its page works with nothing else
running.  Its figures come from Prometheus's query API when
C{front.prometheus_url} is set and answers (the stack's recording rules,
over every front replica), else from the front's own counters.

A L{Sampler} reads the figures once a second into a ring of
C{front.dashboard_points} points.  The front's own counters are read the way
C{/-/metrics} reads them (with several workers, summed over all of them from
prometheus_client's shared files), so whichever worker answers shows the
whole front.  Rates and p99 are taken over the last C{front.dashboard_window}
seconds, like the recording rules' C{rate(...[10s])}.

The page (C{dashboard/}: an HTML page, one script, one style sheet, nothing
from elsewhere) asks C{/-/dashboard/data} for the points it lacks and draws
them on canvases by hand.  It writes the figures it drew into a table whose
cells carry them as C{data-*} attributes, so a test (and a person) can read
what is on screen.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from webstack.runtime.errors import ErrorPage, errorBody
from webstack.runtime.metrics import WorkersView

from .client import UpstreamPool, fetch
from .failures import UpstreamFailure, describeFailure
from .settings import splitHTTPURL

log = Logger()

FIGURES = ("rate", "p99", "in_flight", "cancellations", "errors", "replicas_up")
"""
What is charted per route, in the order of the charts: requests per second,
the 99th percentile of the response time (seconds), requests in flight,
cancellations (the client left, the front cancelled its upstream request)
per second, 5xx answers per second, replicas available.
"""

PROMETHEUS_SERIES = {
    "webstack:route_requests:rate10s": "rate",
    "webstack:route_latency_p99:10s": "p99",
    "webstack:route_in_flight": "in_flight",
    "webstack:route_cancellations:rate10s": "cancellations",
    "webstack:route_5xx:rate10s": "errors",
    "webstack:route_replicas_up": "replicas_up",
}
"""
The stack's recording rules (C{monitoring/rules}), each a vector labelled
by C{route}, and the figure each one is.
"""

INTERVAL = 1.0
"""
Seconds between two points: the page is drawn again as often.
"""

MAX_ANSWER_BYTES = 1 << 20
"""
The largest answer read from Prometheus (a few hundred bytes per series).
"""

ASSETS = Path(__file__).with_name("dashboard")
"""
The page, its script and its style sheet.
"""


# The front's own counters.


@dataclass(frozen=True)
class RouteCounters:
    """
    One route's counters at one moment: totals since the front started
    (summed over its workers) and the gauges as they are.

    @ivar buckets: the response-time histogram, C{(upper bound, requests
        at most that long)}, the last bound infinite.
    """

    requests: float = 0.0
    errors: float = 0.0
    cancellations: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()
    in_flight: float = 0.0
    replicas_up: float = 0.0


def readCounters(families: Iterable, routes: Sequence) -> dict[str, RouteCounters]:
    """
    Each route's counters, from the front's metric families
    (L{webstack.runtime.metrics.HTTPMetrics}, labelled by prefix, and
    L{webstack.front.metrics}, labelled by route name).

    @param routes: the front's L{RouteSettings<webstack.front.settings.RouteSettings>}.
    """
    byPrefix = {route.prefix: route.name for route in routes}
    names = [route.name for route in routes]
    found: dict[str, dict] = {
        name: {"requests": 0.0, "errors": 0.0, "cancellations": 0.0, "in_flight": 0.0,
               "replicas_up": 0.0, "buckets": {}}
        for name in names
    }  # fmt: skip
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "http_requests_total":
                route = byPrefix.get(labels.get("route"))
                if route is not None:
                    found[route]["requests"] += value
                    if labels.get("status", "").startswith("5"):
                        found[route]["errors"] += value
            elif name == "http_request_duration_seconds_bucket":
                route = byPrefix.get(labels.get("route"))
                if route is not None:
                    bound = float(labels["le"])
                    buckets = found[route]["buckets"]
                    buckets[bound] = buckets.get(bound, 0.0) + value
            elif name == "front_upstream_exchanges_total":
                route = labels.get("route")
                if route in names and labels.get("outcome", "").startswith("client_gone"):
                    found[route]["cancellations"] += value
            elif name == "front_replica_in_flight":
                route = labels.get("route")
                if route in names:
                    found[route]["in_flight"] += value
            elif name == "front_replicas_available":
                route = labels.get("route")
                if route in names:
                    found[route]["replicas_up"] = value
    return {
        name: RouteCounters(
            requests=values["requests"],
            errors=values["errors"],
            cancellations=values["cancellations"],
            buckets=tuple(sorted(values["buckets"].items())),
            in_flight=values["in_flight"],
            replicas_up=values["replicas_up"],
        )
        for name, values in found.items()
    }


def frontCounters(registry, metricsDir: str | None) -> Callable[[], Iterable]:
    """
    A function reading the front's metric families as C{/-/metrics} shows
    them: with several workers (C{metricsDir}), every worker's summed.
    """
    source = WorkersView(registry, metricsDir) if metricsDir else registry
    return source.collect


def histogramQuantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """
    The C{q} quantile of a cumulative histogram, as Prometheus's
    C{histogram_quantile} estimates it: linearly within the bucket it falls
    in, the highest finite bound if it falls in the last one.  L{None}
    without observations.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def ownFigures(
    now: tuple[float, RouteCounters], then: tuple[float, RouteCounters] | None
) -> dict[str, float | None]:
    """
    One route's figures from two readings of its counters: rates and p99
    over the time between them (L{None} with a single reading), the gauges
    as they are now.  A counter that went down (a front restarted) counts
    from zero.
    """
    at, counters = now
    figures: dict[str, float | None] = {
        "rate": None,
        "p99": None,
        "in_flight": counters.in_flight,
        "cancellations": None,
        "errors": None,
        "replicas_up": counters.replicas_up,
    }
    if then is None or at <= then[0]:
        return figures
    before = then[1]
    seconds = at - then[0]

    def grown(new: float, old: float) -> float:
        return new - old if new >= old else new

    figures["rate"] = grown(counters.requests, before.requests) / seconds
    figures["errors"] = grown(counters.errors, before.errors) / seconds
    figures["cancellations"] = grown(counters.cancellations, before.cancellations) / seconds
    earlier = dict(before.buckets)
    figures["p99"] = histogramQuantile(
        0.99, [(bound, grown(count, earlier.get(bound, 0.0))) for bound, count in counters.buckets]
    )
    return figures


# Prometheus.


class PrometheusFailed(Exception):
    """
    Prometheus answered, but not with what the dashboard needs.
    """


def prometheusQuery() -> str:
    """
    One PromQL selector for every series in L{PROMETHEUS_SERIES}, by their
    exact names: one request a second rather than six.
    """
    return '{__name__=~"%s"}' % "|".join(PROMETHEUS_SERIES)


def parseAnswer(body: bytes) -> dict[str, dict[str, float | None]]:
    """
    The figures in an answer of Prometheus's C{/api/v1/query}, by the
    C{route} label's value: C{{"async": {"rate": 3.5, ...}}}.  A figure
    Prometheus has as NaN (a p99 without requests) is L{None}.

    @raise PrometheusFailed: if it is not a successful vector answer, or
        holds none of the series.
    """
    try:
        document = json.loads(body)
    except ValueError:
        raise PrometheusFailed("the answer is not JSON") from None
    if not isinstance(document, dict) or document.get("status") != "success":
        error = document.get("error") if isinstance(document, dict) else None
        raise PrometheusFailed(f"the query failed: {error or 'no status success'}")
    data = document.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise PrometheusFailed("the answer is not an instant vector")
    figures: dict[str, dict[str, float | None]] = {}
    for series in data.get("result") or ():
        try:
            metric = series["metric"]
            figure = PROMETHEUS_SERIES.get(metric.get("__name__"))
            route = metric.get("route")
            value = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise PrometheusFailed("a series of the answer is malformed") from None
        if figure is None or route is None:
            continue
        figures.setdefault(route, {})[figure] = value if math.isfinite(value) else None
    if not figures:
        raise PrometheusFailed(
            "it has none of the webstack:route_* recording rules' series (yet)"
        )
    return figures


def _parsed(answer: tuple[int, bytes]) -> dict[str, dict[str, float | None]]:
    code, body = answer
    if code != 200:
        raise PrometheusFailed(f"it answered HTTP {code}")
    return parseAnswer(body)


class PrometheusSource:
    """
    The recording rules' figures, asked of Prometheus's query API with the
    front's own HTTP client, within C{timeout} seconds.
    """

    def __init__(self, pool: UpstreamPool, reactor, url: str, timeout: float) -> None:
        self.url = url
        self._pool = pool
        self._reactor = reactor
        self._timeout = timeout
        self._host, self._port, path = splitHTTPURL(url)
        self._target = f"{path}/api/v1/query?query={quote(prometheusQuery(), safe='')}".encode(
            "ascii"
        )

    def fetch(self) -> Deferred:
        """
        A Deferred of L{parseAnswer}'s figures, or of the failure.
        """
        done = fetch(
            self._pool,
            self._host,
            self._port,
            self._target,
            b"webstack-front-dashboard",
            accept=b"application/json",
            maxBody=MAX_ANSWER_BYTES,
        )
        done.addTimeout(self._timeout, self._reactor)
        return done.addCallback(_parsed)

    def describe(self, failure: Failure) -> str:
        """
        Why a fetch failed, in a few words for the page.
        """
        if failure.check(TimeoutError):
            return f"no answer within {self._timeout:g} s"
        if failure.check(PrometheusFailed, UpstreamFailure):
            return str(failure.value)
        return describeFailure(failure)


# The ring of points.


@dataclass(frozen=True)
class Point:
    """
    The figures of every route at one moment, and where they came from
    (C{"prometheus"} or C{"front"}).
    """

    time: float
    source: str
    figures: Mapping[str, Mapping[str, float | None]]


class Sampler:
    """
    Takes a L{Point} every second (L{sample}, run by L{EverySecond}) and
    keeps the last C{points} of them.

    @ivar prometheusState: C{"off"} (no C{front.prometheus_url}),
        C{"waiting"} (not asked yet), C{"ok"} (the last point came from it)
        or C{"failing"}, with C{prometheusDetail} saying why.
    """

    def __init__(
        self,
        reactor,
        read: Callable[[], Iterable],
        routes: Sequence,
        *,
        points: int = 300,
        window: float = 10.0,
        prometheus: PrometheusSource | None = None,
    ) -> None:
        """
        @param read: returns the front's metric families (L{frontCounters}).
        @param routes: the front's routes, in the order they are shown.
        """
        self._reactor = reactor
        self._read = read
        self.routes = tuple(route.name for route in routes)
        self._routeSettings = tuple(routes)
        self._labels = {}
        for route in routes:
            self._labels[route.name] = route.name
            self._labels[route.prefix] = route.name
        self.window = window
        self.points: deque[Point] = deque(maxlen=points)
        # Enough readings to reach one `window` back, and one more.
        self._readings: deque[tuple[float, dict[str, RouteCounters]]] = deque(
            maxlen=int(math.ceil(window / INTERVAL)) + 2
        )
        self.totals: dict[str, RouteCounters] = {}
        self.prometheus = prometheus
        self.prometheusState = "off" if prometheus is None else "waiting"
        self.prometheusDetail = (
            "front.prometheus_url is not set" if prometheus is None else "not asked yet"
        )

    def _baseline(self, now: float):
        """
        The reading one window before C{now} (half an interval's leeway for
        a late timer), or the oldest there is.
        """
        older = [r for r in self._readings if r[0] < now]
        if not older:
            return None
        for reading in reversed(older):
            if now - reading[0] >= self.window - INTERVAL / 2:
                return reading
        return older[0]

    def sample(self) -> Deferred | None:
        """
        Read the front's counters now, and ask Prometheus if there is one;
        the point is kept once it has answered, or failed.
        """
        now = self._reactor.seconds()
        try:
            counters = readCounters(self._read(), self._routeSettings)
        except Exception:
            # A point is missing; the timer (which stops at an error) goes on.
            log.failure("dashboard: the front's counters could not be read")
            return None
        baseline = self._baseline(now)
        self._readings.append((now, counters))
        self.totals = counters
        own = {
            name: ownFigures(
                (now, counters[name]),
                (baseline[0], baseline[1][name]) if baseline else None,
            )
            for name in self.routes
        }
        # Rates over the time that really passed; the point on the second
        # it was meant for (see EverySecond).
        at = float(round(now))
        if self.prometheus is None:
            self.points.append(Point(at, "front", own))
            return None

        def answered(figures):
            shown = {name: dict.fromkeys(FIGURES) for name in self.routes}
            for label, values in figures.items():
                name = self._labels.get(label)
                if name is not None:
                    shown[name].update(values)
            if self.prometheusState != "ok":
                log.info(
                    "dashboard: Prometheus at {url} answers",
                    event="dashboard_prometheus_ok",
                    url=self.prometheus.url,
                )
            self.prometheusState, self.prometheusDetail = "ok", "answering"
            self.points.append(Point(at, "prometheus", shown))

        def failed(failure):
            detail = self.prometheus.describe(failure)
            if self.prometheusState != "failing" or self.prometheusDetail != detail:
                log.warn(
                    "dashboard: Prometheus at {url} failed ({detail}):"
                    " showing the front's own counters",
                    event="dashboard_prometheus_failed",
                    url=self.prometheus.url,
                    detail=detail,
                )
            self.prometheusState, self.prometheusDetail = "failing", detail
            self.points.append(Point(at, "front", own))

        return (
            self.prometheus.fetch()
            .addCallbacks(answered, failed)
            .addErrback(lambda f: log.failure("dashboard: a point was lost", f))
        )

    def document(self, since: float | None = None) -> dict:
        """
        What C{/-/dashboard/data} says: the points after C{since} (all of
        them without it), a list per figure and route, and the front's own
        totals at the newest one.
        """
        points = [p for p in self.points if since is None or p.time > since]
        newest = self.points[-1] if self.points else None
        return {
            "time": newest.time if newest else None,
            "source": newest.source if newest else None,
            "interval": INTERVAL,
            "window": self.window,
            "capacity": self.points.maxlen,
            "prometheus": {
                "url": self.prometheus.url if self.prometheus else "",
                "state": self.prometheusState,
                "detail": self.prometheusDetail,
            },
            "routes": list(self.routes),
            "figures": list(FIGURES),
            "times": [p.time for p in points],
            "sources": [p.source for p in points],
            "series": {
                name: {
                    figure: [_rounded(p.figures[name][figure]) for p in points]
                    for figure in FIGURES
                }
                for name in self.routes
            },
            "totals": {
                name: {
                    "requests": self.totals[name].requests,
                    "errors": self.totals[name].errors,
                    "cancellations": self.totals[name].cancellations,
                }
                for name in self.routes
                if name in self.totals
            },
        }


def _rounded(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 6)


class EverySecond(Service):
    """
    Calls C{call} on every whole second of C{reactor}'s clock while running
    (a C{TimerService} that starts on a whole second).  With several front
    workers, each samples into a ring of its own; on whole seconds, their
    points have the same times, so a page whose requests reach one worker,
    then another, sees one timeline.
    """

    def __init__(self, reactor, call: Callable[[], Deferred | None]) -> None:
        self._reactor = reactor
        self._call = call
        self._loop: LoopingCall | None = None
        self._first = None

    def startService(self) -> None:
        super().startService()
        now = self._reactor.seconds()
        self._first = self._reactor.callLater(math.ceil(now) - now, self._begin)

    def _begin(self) -> None:
        self._first = None
        self._loop = LoopingCall(self._call)
        self._loop.clock = self._reactor
        self._loop.start(INTERVAL, now=True).addErrback(
            lambda f: log.failure("dashboard: sampling stopped", f)
        )

    def stopService(self):
        if self._first is not None and self._first.active():
            self._first.cancel()
        self._first = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return super().stopService()


# The resources.


class _Asset(Resource):
    isLeaf = True

    def __init__(self, body: bytes, contentType: bytes) -> None:
        super().__init__()
        self._body = body
        self._type = contentType

    def render_GET(self, request):
        request.setHeader(b"content-type", self._type)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        # Everything the page uses comes from here.
        request.setHeader(
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        )
        return self._body


class _Data(Resource):
    isLeaf = True

    def __init__(self, sampler: Sampler) -> None:
        super().__init__()
        self._sampler = sampler

    def render_GET(self, request):
        since = None
        raw = request.args.get(b"since", [b""])[0]
        if raw:
            try:
                since = float(raw)
                if not math.isfinite(since):
                    raise ValueError()
            except ValueError:
                return errorBody(
                    request, 400, "since must be a time in seconds, as the data's times are"
                )
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self._sampler.document(since), separators=(",", ":")).encode()


class DashboardResource(Resource):
    """
    C{/-/dashboard} (the page), C{/-/dashboard/data} (JSON),
    C{/-/dashboard/dashboard.js} and C{/-/dashboard/dashboard.css}.
    """

    def __init__(self, sampler: Sampler, assets: Path = ASSETS) -> None:
        super().__init__()
        page = _Asset((assets / "dashboard.html").read_bytes(), b"text/html; charset=utf-8")
        self._children = {
            b"": page,
            b"data": _Data(sampler),
            b"dashboard.js": _Asset(
                (assets / "dashboard.js").read_bytes(), b"text/javascript; charset=utf-8"
            ),
            b"dashboard.css": _Asset(
                (assets / "dashboard.css").read_bytes(), b"text/css; charset=utf-8"
            ),
        }
        self._page = page

    def render(self, request):
        return self._page.render(request)

    def getChild(self, path, request):
        child = self._children.get(path)
        if child is None or request.postpath:
            return ErrorPage(404, "The dashboard has a page, its data, a script and a style sheet.")
        return child
