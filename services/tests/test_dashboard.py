"""
The front's live dashboard (L{webstack.front.dashboard}) and the landing
page's links to the operator's tools.

 - The sampler on a L{Clock}, reading real prometheus_client metrics: a
   point a second, rates and p99 over the window, a bounded ring.
 - The Prometheus source: its answers parsed, its timeout on a Clock, and
   over real sockets a front asking a small Prometheus of the test's own
   (canned query API answers) and falling back to its own counters when it
   fails, saying so.
 - The page's data over a real socket from a front of two workers: the
   sum over both, equal to C{/-/metrics}.
 - Debian's headless Chromium drawing the page under a little load: the
   figures it shows against the data and the metrics, and a screenshot kept
   in the test's output (C{tmp_path}); and the landing page's probe of
   locust's UI.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from webstack.front.client import UpstreamPool
from webstack.front.dashboard import (
    FIGURES,
    EverySecond,
    PROMETHEUS_SERIES,
    PrometheusFailed,
    PrometheusSource,
    RouteCounters,
    Sampler,
    histogramQuantile,
    parseAnswer,
    readCounters,
)
from webstack.front.landing import LandingPage, Links
from webstack.front.metrics import ProxyMetrics, ReplicaGauges
from webstack.front.settings import RouteSettings, loadSettings
from webstack.front.upstreams import ReplicaSet
from webstack.localstack import LocalStack
from webstack.runtime.config import ConfigError
from webstack.runtime.metrics import HTTPMetrics

from .support import closedPort, requiredTool

ROUTES = (
    RouteSettings(prefix="/async/", upstream="127.0.0.1:8081,127.0.0.2:8081", name="async"),
    RouteSettings(prefix="/wsgi/", upstream="127.0.0.1:8083", name="wsgi"),
)


# The sampler, on a Clock.


class Front:
    """
    The front's metrics as the front makes them, with time on a Clock.
    """

    def __init__(self, points=300, window=10.0, prometheus=None):
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = CollectorRegistry()
        self.http = HTTPMetrics(self.registry)
        self.proxy = ProxyMetrics(self.registry)
        self.sets = {
            r.name: ReplicaSet(r.name, r.targets(), self.clock, 5.0) for r in ROUTES
        }
        ReplicaGauges(self.registry, self.sets)
        self.sampler = Sampler(
            self.clock,
            self.registry.collect,
            ROUTES,
            points=points,
            window=window,
            prometheus=prometheus,
        )
        self.timer = EverySecond(self.clock, self.sampler.sample)
        self.timer.startService()
        self.clock.advance(0)  # on a whole second: at once

    def requests(self, prefix, count, seconds=0.02, status="200"):
        for _ in range(count):
            self.http.received()
            self.http.observe(prefix, "GET", status, seconds)

    def second(self):
        self.clock.advance(1.0)

    def newest(self, route):
        return self.sampler.points[-1].figures[route]


def test_aPointEverySecondWithRatesOverTheWindow():
    front = Front(window=10.0)
    assert len(front.sampler.points) == 1
    assert front.newest("async")["rate"] is None  # one reading: no rate yet
    for _ in range(12):
        front.requests("/async/", 5)
        front.requests("/wsgi/", 1, status="500")
        front.proxy.outcome("async", "client_gone_before_response")
        front.second()
    assert len(front.sampler.points) == 13
    assert [p.time for p in front.sampler.points] == [1000.0 + i for i in range(13)]
    async_, wsgi = front.newest("async"), front.newest("wsgi")
    assert async_["rate"] == pytest.approx(5.0)
    assert async_["cancellations"] == pytest.approx(1.0)
    assert async_["errors"] == 0
    assert wsgi["rate"] == pytest.approx(1.0)
    assert wsgi["errors"] == pytest.approx(1.0)
    # Every request took 0.02 s, in the (0.01, 0.025] bucket: Prometheus's
    # histogram_quantile interpolates 99% of the way through it.
    assert async_["p99"] == pytest.approx(0.01 + 0.015 * 0.99)
    assert front.sampler.totals["async"].requests == 60
    assert front.sampler.totals["async"].cancellations == 12


def test_ratesFollowTheLoadAndFallToZeroAfterTheWindow():
    front = Front(window=4.0)
    front.requests("/async/", 8)
    front.second()
    # One second since the first reading: 8 requests in 1 s.
    assert front.newest("async")["rate"] == pytest.approx(8.0)
    for _ in range(3):
        front.second()
    assert front.newest("async")["rate"] == pytest.approx(2.0)  # 8 over 4 s
    front.second()
    assert front.newest("async")["rate"] == 0
    assert front.newest("async")["p99"] is None  # nothing observed in the window


def test_gaugesAreTakenAsTheyAre():
    front = Front()
    [first, second] = front.sets["async"].replicas
    first.inFlight, second.inFlight = 3, 4
    front.second()
    assert front.newest("async")["in_flight"] == 7
    assert front.newest("async")["replicas_up"] == 2
    front.sets["async"].eject(second, "refused")
    front.second()
    assert front.newest("async")["replicas_up"] == 1
    assert front.newest("wsgi")["replicas_up"] == 1
    assert front.newest("wsgi")["in_flight"] == 0


def test_theRingKeepsTheLastPoints():
    front = Front(points=10)
    for _ in range(25):
        front.second()
    times = [p.time for p in front.sampler.points]
    assert times == [1016.0 + i for i in range(10)]
    assert front.sampler.document()["capacity"] == 10
    assert front.sampler.document(since=1023.0)["times"] == [1024.0, 1025.0]
    assert front.sampler.document(since=1025.0)["times"] == []


def test_aLateTimerStillTakesTheRateOverTheRightTime():
    front = Front(window=10.0)
    front.timer.stopService()
    for i in range(15):
        front.requests("/async/", 10)
        front.clock.advance(0.6 if i % 2 else 1.4)
        front.sampler.sample()
    newest = front.sampler.points[-1]
    rate = newest.figures["async"]["rate"]
    # 10 requests per step, steps of 1 s on average, whatever the jitter.
    assert rate == pytest.approx(10.0, rel=0.2)


def test_aReadingThatFailsLosesOnePointNotTheTimer():
    registry = CollectorRegistry()
    HTTPMetrics(registry)
    readings = []

    def read():
        readings.append(None)
        if len(readings) == 2:
            raise OSError("a worker's metrics file went away")
        return registry.collect()

    clock = Clock()
    sampler = Sampler(clock, read, ROUTES)
    timer = EverySecond(clock, sampler.sample)
    timer.startService()
    for _ in range(4):
        clock.advance(1.0)
    assert len(readings) == 4
    assert [p.time for p in sampler.points] == [1.0, 3.0, 4.0]
    timer.stopService()


def test_everyWorkerSamplesOnTheSameSeconds():
    clock = Clock()
    clock.advance(1000.3)
    samplers = []
    for offset in (0.0, 0.45):
        clock.advance(offset)
        sampler = Sampler(clock, CollectorRegistry().collect, ROUTES)
        EverySecond(clock, sampler.sample).startService()
        samplers.append(sampler)
    for _ in range(40):
        clock.advance(0.1)
    first, second = ([p.time for p in s.points] for s in samplers)
    assert first == second == [1001.0, 1002.0, 1003.0, 1004.0]


def test_stoppingStopsTheSampling():
    clock = Clock()
    clock.advance(0.5)
    calls = []
    service = EverySecond(clock, lambda: calls.append(clock.seconds()))
    service.startService()
    service.stopService()
    clock.advance(3)
    assert calls == []
    service.startService()
    for step in (0.5, 1.0, 0.6):
        clock.advance(step)
    service.stopService()
    clock.advance(3)
    assert calls == [4.0, 5.0]


def test_aCounterThatWentDownCountsFromZero():
    readings = []
    old, new = CollectorRegistry(), CollectorRegistry()
    oldMetrics, newMetrics = HTTPMetrics(old), HTTPMetrics(new)
    for _ in range(50):
        oldMetrics.observe("/async/", "GET", "200", 0.01)
    for _ in range(3):
        newMetrics.observe("/async/", "GET", "200", 0.01)
    readings.extend([old, new])
    clock = Clock()
    sampler = Sampler(clock, lambda: readings.pop(0).collect(), ROUTES, window=1.0)
    sampler.sample()
    clock.advance(1.0)
    sampler.sample()
    assert sampler.points[-1].figures["async"]["rate"] == 3.0


def test_theDocumentHasASeriesPerRouteAndFigure():
    front = Front()
    front.requests("/async/", 2)
    front.second()
    document = json.loads(json.dumps(front.sampler.document()))
    assert document["routes"] == ["async", "wsgi"]
    assert document["figures"] == list(FIGURES)
    assert document["source"] == "front"
    assert document["prometheus"] == {
        "url": "",
        "state": "off",
        "detail": "front.prometheus_url is not set",
    }
    assert document["times"] == [1000.0, 1001.0]
    assert document["series"]["async"]["rate"] == [None, 2.0]
    assert document["series"]["async"]["replicas_up"] == [2.0, 2.0]
    assert document["totals"]["async"] == {"requests": 2, "errors": 0, "cancellations": 0}


@pytest.mark.parametrize(
    "buckets, expected",
    [
        ([], None),
        ([(0.1, 0), (float("inf"), 0)], None),
        # Evenly through the first bucket, from 0.
        ([(0.1, 100), (1.0, 100), (float("inf"), 100)], 0.099),
        # In the second bucket: rank 99 of 100, 9 of 10 through (0.1, 1].
        ([(0.1, 90), (1.0, 100), (float("inf"), 100)], 0.1 + 0.9 * 0.9),
        # In the last, unbounded one: its lower bound (as Prometheus).
        ([(0.1, 10), (1.0, 50), (float("inf"), 100)], 1.0),
    ],
)
def test_histogramQuantileAsPrometheusEstimatesIt(buckets, expected):
    result = histogramQuantile(0.99, buckets)
    assert result == (None if expected is None else pytest.approx(expected))


def test_readCountersTakesTheFrontsOwnNamesAndLabels():
    registry = CollectorRegistry()
    http, proxy = HTTPMetrics(registry), ProxyMetrics(registry)
    http.observe("/async/", "GET", "200", 0.3)
    http.observe("/async/", "POST", "502", 0.3)
    http.observe("/-/", "GET", "200", 0.001)  # the front's own pages: not a route
    proxy.outcome("async", "client_gone_during_body")
    proxy.outcome("async", "response")
    counters = readCounters(registry.collect(), ROUTES)
    assert counters["async"].requests == 2
    assert counters["async"].errors == 1
    assert counters["async"].cancellations == 1
    assert dict(counters["async"].buckets)[0.5] == 2
    assert counters["wsgi"] == RouteCounters(buckets=counters["wsgi"].buckets)
    assert counters["wsgi"].requests == 0


# Prometheus: its answers, its timeout, and the sampler's choice.


def vector(*series):
    return json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"__name__": name, "route": route}, "value": [1.0, value]}
                    for name, route, value in series
                ],
            },
        }
    ).encode()


def test_anAnswerGivesEachRoutesFigures():
    answer = vector(
        ("webstack:route_requests:rate10s", "async", "12.5"),
        ("webstack:route_latency_p99:10s", "async", "NaN"),
        ("webstack:route_replicas_up", "/wsgi/", "3"),
        ("something:else", "async", "1"),
    )
    assert parseAnswer(answer) == {
        "async": {"rate": 12.5, "p99": None},
        "/wsgi/": {"replicas_up": 3.0},
    }


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"<html>", "not JSON"),
        (b'{"status": "error", "error": "parse error at char 3"}', "parse error at char 3"),
        (
            b'{"status": "success", "data": {"resultType": "matrix", "result": []}}',
            "instant vector",
        ),
        (vector(), "none of the webstack:route_*"),
        (
            b'{"status": "success", "data": {"resultType": "vector", "result": [{"x": 1}]}}',
            "malformed",
        ),
    ],
)
def test_aBadAnswerSaysWhatIsWrong(body, reason):
    with pytest.raises(PrometheusFailed, match=re.escape(reason)):
        parseAnswer(body)


def test_prometheusThatDoesNotAnswerTimesOutOnTheClock():
    reactor = MemoryReactorClock()
    pool = UpstreamPool(reactor, connectTimeout=3.0, maxIdle=4, idleTimeout=30.0)
    source = PrometheusSource(pool, reactor, "http://prometheus:9090/prom/", 0.5)
    failures = []
    source.fetch().addErrback(failures.append)
    [(host, port, *_)] = reactor.tcpClients
    assert (host, port) == ("prometheus", 9090)
    reactor.advance(0.49)
    assert failures == []
    reactor.advance(0.02)
    [failure] = failures
    assert source.describe(failure) == "no answer within 0.5 s"


class FakePrometheus:
    """
    A source whose answers the test gives (the real one is tested over
    sockets below).
    """

    url = "http://prometheus:9090"

    def __init__(self):
        self.answers = []

    def fetch(self):
        return self.answers.pop(0)

    def describe(self, failure):
        return str(failure.value)


def test_theSamplerShowsPrometheusWhileItAnswersAndItsOwnCountersWhenItFails():
    prometheus = FakePrometheus()
    pending = Deferred()
    prometheus.answers = [
        succeed({"async": {"rate": 42.0, "p99": 0.25}, "/wsgi/": {"errors": 1.5}}),
        pending,
        fail(PrometheusFailed("it answered HTTP 503")),
    ]
    front = Front(prometheus=prometheus)
    [first] = front.sampler.points
    assert first.source == "prometheus"
    assert first.figures["async"]["rate"] == 42.0
    assert first.figures["async"]["p99"] == 0.25
    assert first.figures["async"]["in_flight"] is None  # not in the answer
    assert first.figures["wsgi"]["errors"] == 1.5  # labelled by prefix
    assert front.sampler.prometheusState == "ok"

    front.requests("/async/", 4)
    front.second()
    # The point waits for Prometheus's answer (or its failure).
    assert len(front.sampler.points) == 1
    pending.callback({"async": {"rate": 7.0}})
    assert front.sampler.points[-1].figures["async"]["rate"] == 7.0

    front.second()
    newest = front.sampler.points[-1]
    assert newest.source == "front"
    assert newest.figures["async"]["rate"] == pytest.approx(2.0)  # 4 over 2 s
    document = front.sampler.document()
    assert document["source"] == "front"
    assert document["sources"] == ["prometheus", "prometheus", "front"]
    assert document["prometheus"] == {
        "url": "http://prometheus:9090",
        "state": "failing",
        "detail": "it answered HTTP 503",
    }


# Settings.


def test_theDashboardsSettingsHaveDefaults():
    settings = loadSettings({"front": {}}, {}, "stack.toml")
    assert settings.prometheus_url == ""
    assert settings.prometheus_public_url == "http://127.0.0.1:9090"
    assert settings.locust_ui_url == "http://127.0.0.1:8089"
    assert settings.dashboard_points == 300
    assert settings.dashboard_window == 10.0
    overridden = loadSettings(
        {"front": {}}, {"WEBSTACK_FRONT_PROMETHEUS_URL": "http://prometheus:9090"}, "stack.toml"
    )
    assert overridden.prometheus_url == "http://prometheus:9090"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("prometheus_url", "https://prometheus:9090", "plain HTTP"),
        ("prometheus_url", "prometheus:9090", "plain HTTP"),
        ("prometheus_url", "http://:9090", "there is no host"),
        ("prometheus_url", "http://prometheus:9090/?x=1", "no query"),
        ("prometheus_url", "http://prometheus:99999", "not a URL"),
        ("prometheus_public_url", "javascript:alert(1)", "expected an http:// or https:// URL"),
        ("locust_ui_url", "127.0.0.1:8089", "expected an http:// or https:// URL"),
        ("prometheus_timeout", 2.0, "out of range"),
        ("dashboard_points", 5, "out of range"),
    ],
)
def test_badDashboardSettingsAreNamed(key, value, message):
    with pytest.raises(ConfigError, match=rf"front\.{key} = .*{re.escape(message)}"):
        loadSettings({"front": {key: value}}, {}, "stack.toml")


# The landing page's links.


def landingHTML(links):
    sets = {r.name: ReplicaSet(r.name, r.targets(), Clock(), 5.0) for r in ROUTES}
    page = LandingPage(ROUTES, sets, links=links)
    return page.render_GET(DummyRequest([b""])).decode()


def test_theLandingPageLinksTheDashboardPrometheusAndLocust():
    html = landingHTML(Links(prometheus="http://127.0.0.1:9090", locust="http://127.0.0.1:8089"))
    assert '<a id="dashboard" href="/-/dashboard">' in html
    assert '<a id="prometheus" href="http://127.0.0.1:9090">' in html
    assert "front.prometheus_url is not set" in html
    assert '<a id="locust" href="http://127.0.0.1:8089">' in html
    assert 'data-probe="http://127.0.0.1:8089"' in html
    bare = landingHTML(Links())
    assert 'id="dashboard"' in bare
    assert 'id="prometheus"' not in bare and 'id="locust"' not in bare


# Over real sockets: a front of two workers.


TWO_WORKERS = {"WEBSTACK_FRONT_WORKERS": "2"}


def fetch(port, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


def data(port, query=""):
    status, _, body = fetch(port, "/-/dashboard/data" + query)
    assert status == 200
    return json.loads(body)


def dataFrom(port, worker, tries=40):
    """
    The data as front worker C{worker} (its C{X-Worker}) has it: each
    worker keeps a ring of its own, sampled at its own instants.  Asked on
    a new connection each time until that worker answers (bounded).
    """
    for _ in range(tries):
        _, headers, body = fetch(port, "/-/dashboard/data")
        if headers.get("X-Worker", "") == worker:
            return json.loads(body)
    raise AssertionError(f"worker {worker!r} never answered in {tries} tries")


def metricTotals(port):
    """
    From C{/-/metrics}: requests, 5xx and cancellations per route name.
    """
    _, _, body = fetch(port, "/-/metrics")
    totals = {}

    def of(route):
        return totals.setdefault(route, {"requests": 0, "errors": 0, "cancellations": 0})

    for line in body.decode().splitlines():
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if not match:
            continue
        name, value = match[1], float(match[3])
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        if name == "http_requests_total" and labels["route"] not in ("/-/", "other"):
            of(labels["route"].strip("/"))["requests"] += value
            if labels["status"].startswith("5"):
                of(labels["route"].strip("/"))["errors"] += value
        elif name == "front_upstream_exchanges_total":
            if labels["outcome"].startswith("client_gone"):
                of(labels["route"])["cancellations"] += value
    return totals


def abandon(port, path, after=0.3):
    """
    Ask for C{path} and leave before the answer.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        time.sleep(after)


def waitForTotals(port, expected, timeout=10.0):
    """
    Poll the data until its totals are C{expected}, by route (bounded).
    """
    deadline = time.monotonic() + timeout
    while True:
        document = data(port)
        shown = {
            route: document["totals"][route] for route in expected
        }
        if shown == expected or time.monotonic() > deadline:
            return document, shown
        time.sleep(0.25)


def waitUntilIdleEverywhere(port, route, workers=2, timeout=10.0):
    """
    Poll the data (a new connection each time, so either worker answers)
    until every one of the front's C{workers} has answered with a last
    point of C{route}'s requests in flight at 0 (bounded).  Each worker
    samples on its own second, and the replicas' in-flight gauges it sums
    are published by each worker once a second: the totals, counted at
    once, can be complete while a worker's last point still holds requests
    that have since finished.
    """
    idle = set()
    deadline = time.monotonic() + timeout
    while len(idle) < workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"{route}: in flight not 0 in every worker's data: {idle}")
        status, headers, body = fetch(port, "/-/dashboard/data")
        assert status == 200
        if json.loads(body)["series"][route]["in_flight"][-1] == 0:
            idle.add(headers.get("X-Worker"))
        time.sleep(0.1)


@pytest.mark.integration
def test_theDataIsTheSumOverEveryWorker():
    with LocalStack(ephemeral=True, backends=("async",), env=TWO_WORKERS) as stack:
        port = stack.services["front"].port
        workers = set()
        for _ in range(40):
            _, headers, _ = fetch(port, "/async/delay?seconds=0.01")
            workers.add(headers.get("X-Worker"))
        for _ in range(3):
            abandon(port, "/async/interruptible?seconds=5")
        assert len(workers) == 2, f"one worker answered every request: {workers}"
        expected = {"async": {"requests": 43, "errors": 0, "cancellations": 3}}
        document, shown = waitForTotals(port, expected)
        assert shown == expected
        assert metricTotals(port)["async"] == expected["async"]
        assert document["source"] == "front"
        assert document["routes"][0] == "async"
        series = document["series"]["async"]
        assert all(len(series[f]) == len(document["times"]) for f in FIGURES)
        assert max(v for v in series["rate"] if v is not None) > 0
        assert series["replicas_up"][-1] == 1
        assert document["times"] == sorted(document["times"])
        later = data(port, f"?since={document['times'][-1]}")
        assert all(t > document["times"][-1] for t in later["times"])
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(port, "/-/dashboard/data?since=soon")
        assert refused.value.code == 400
        status, headers, page = fetch(port, "/-/dashboard")
        assert status == 200 and b'src="/-/dashboard/dashboard.js"' in page
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        # Nothing the page uses is from elsewhere.
        for asset in ("dashboard.js", "dashboard.css"):
            _, _, body = fetch(port, f"/-/dashboard/{asset}")
            assert not re.search(rb"https?://", body), asset


# Over real sockets: a Prometheus of the test's own.


class _PrometheusHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        url = urllib.parse.urlsplit(self.path)
        server.queries.append((url.path, urllib.parse.parse_qs(url.query).get("query")))
        if server.mode == "gone":
            # Closed: the connections the front keeps alive close too.
            self.close_connection = True
            return
        if server.mode == "hang":
            time.sleep(3)
            return
        if server.mode == "503":
            body, status = b"busy", 503
        else:
            body, status = server.answer, 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the front hangs up on a slow answer: nothing to report


class CannedPrometheus:
    """
    Prometheus's query API as far as the dashboard uses it, answering every
    query with C{answer} (or 503, or nothing, as C{mode} says).
    """

    def __init__(self, answer: bytes):
        self.server = _QuietServer(("127.0.0.1", 0), _PrometheusHandler)
        self.server.answer = answer
        self.server.mode = "answer"
        self.server.queries = []
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.server.mode = "gone"
        if self._thread.is_alive():
            self.server.shutdown()
            self.server.server_close()


def waitForData(port, predicate, what, timeout=8.0):
    deadline = time.monotonic() + timeout
    while True:
        document = data(port)
        if predicate(document):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s: {document['prometheus']}")
        time.sleep(0.2)


@pytest.mark.integration
def test_prometheusIsTheSourceWhileItAnswersThenTheFrontsOwnCounters():
    answer = vector(
        ("webstack:route_requests:rate10s", "async", "12.5"),
        ("webstack:route_latency_p99:10s", "async", "0.125"),
        ("webstack:route_in_flight", "async", "3"),
        ("webstack:route_cancellations:rate10s", "async", "0.5"),
        ("webstack:route_5xx:rate10s", "/async/", "0.25"),
        ("webstack:route_replicas_up", "async", "2"),
    )
    prometheus = CannedPrometheus(answer)
    env = {
        "WEBSTACK_FRONT_PROMETHEUS_URL": f"http://127.0.0.1:{prometheus.port}/prom",
        "WEBSTACK_FRONT_LOCUST_UI_URL": f"http://127.0.0.1:{closedPort()}",
    }
    try:
        with LocalStack(ephemeral=True, backends=("async",), env=env) as stack:
            port = stack.services["front"].port
            document = waitForData(
                port, lambda d: d["source"] == "prometheus", "Prometheus as the source"
            )
            index = document["sources"].index("prometheus")
            shown = {f: document["series"]["async"][f][index] for f in FIGURES}
            assert shown == {
                "rate": 12.5,
                "p99": 0.125,
                "in_flight": 3,
                "cancellations": 0.5,
                "errors": 0.25,
                "replicas_up": 2,
            }
            assert document["prometheus"]["state"] == "ok"
            path, query = prometheus.server.queries[0]
            assert path == "/prom/api/v1/query"
            names = re.fullmatch(r'\{__name__=~"(.*)"\}', query[0])[1].split("|")
            assert sorted(names) == sorted(PROMETHEUS_SERIES)
            landing = json.loads(
                urllib.request.urlopen(
                    urllib.request.Request(
                        f"http://127.0.0.1:{port}/", headers={"Accept": "application/json"}
                    ),
                    timeout=10,
                ).read()
            )
            assert landing["tools"]["prometheus"]["state"] == "the dashboard's source"

            prometheus.server.mode = "503"
            document = waitForData(
                port, lambda d: d["source"] == "front", "the fallback on a 503"
            )
            assert document["prometheus"]["detail"] == "it answered HTTP 503"
            assert document["series"]["async"]["replicas_up"][-1] == 1  # the front's own

            prometheus.server.mode = "hang"
            document = waitForData(
                port,
                lambda d: d["prometheus"]["detail"] == "no answer within 0.5 s",
                "the fallback on a timeout",
            )
            assert document["source"] == "front"

            prometheus.server.mode = "answer"
            waitForData(port, lambda d: d["source"] == "prometheus", "Prometheus again")

            prometheus.close()
            document = waitForData(
                port,
                lambda d: "refused" in d["prometheus"]["detail"],
                "the fallback when it is gone",
            )
            assert document["source"] == "front"
            assert "not answering the front" in fetch(port, "/")[2].decode()
    finally:
        prometheus.close()


# In a real browser.


@pytest.fixture(scope="module")
def chromium():
    return requiredTool("chromium", "chromium")


def runChromium(binary, url, workdir, *extra, budget=3000):
    """
    Open C{url} in headless Chromium, let the page's timers run for
    C{budget} ms of virtual time (network fetches pause it), and return
    what Chromium printed (the DOM with C{--dump-dom}).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        binary,
        "--headless",
        "--no-sandbox",  # as root, Chromium will not start with its sandbox
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        # Nothing but the page: no update checks, pings or reports elsewhere.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-domain-reliability",
        "--no-pings",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,1500",
        f"--user-data-dir={workdir / 'profile'}",
        f"--virtual-time-budget={budget}",
        *extra,
        url,
    ]
    env = dict(os.environ, HOME=str(workdir))
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, cwd=workdir
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class DOM(HTMLParser):
    """
    The figures a dumped dashboard shows: every element carrying a
    C{data-*} attribute, by tag.
    """

    def __init__(self, text):
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.canvases: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self.byId: dict[str, dict[str, str]] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = attrs
        elif tag == "td" and "data-figure" in attrs:
            self.cells[(attrs["data-route"], attrs["data-figure"])] = attrs["data-value"]
        elif tag == "canvas":
            self.canvases[attrs["data-figure"]] = int(attrs["data-segments"])
        if "id" in attrs:
            self.byId[attrs["id"]] = attrs


def shown(value: str):
    return None if value == "" else float(value)


class Load:
    """
    A little load on the front, bounded in count and time: C{total}
    requests from a few threads over about C{seconds}, one in ten a 500 from
    the WSGI demo, and C{aborts} requests abandoned before their answer.
    """

    def __init__(self, port, total=200, seconds=3.0, aborts=5, threads=4):
        self.port = port
        self.sent = {"async": 0, "wsgi": 0}
        self.errors = 0
        self.aborts = aborts
        self._lock = threading.Lock()
        self._each = total // threads
        self._pause = seconds / self._each
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        self._threads.append(threading.Thread(target=self._abandon))

    def _run(self, index):
        deadline = time.monotonic() + 30
        for n in range(self._each):
            if time.monotonic() > deadline:
                break
            route, path = (
                ("wsgi", "/wsgi/app/raise")
                if (n + index) % 10 == 0
                else ("async", "/async/deferred?seconds=0.02")
            )
            try:
                fetch(self.port, path)
            except urllib.error.HTTPError as e:
                assert e.code == 500, e
                with self._lock:
                    self.errors += 1
            with self._lock:
                self.sent[route] += 1
            time.sleep(self._pause)

    def _abandon(self):
        for _ in range(self.aborts):
            abandon(self.port, "/async/interruptible?seconds=5", after=0.4)
            time.sleep(0.2)
        with self._lock:
            self.sent["async"] += self.aborts

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def join(self):
        for thread in self._threads:
            thread.join(60)


@pytest.mark.integration
def test_chromiumDrawsTheDashboardUnderLoad(chromium, tmp_path):
    locust = CannedPrometheus(b"locust")  # anything that answers will do
    env = dict(TWO_WORKERS, WEBSTACK_FRONT_LOCUST_UI_URL=f"http://127.0.0.1:{locust.port}")
    try:
        with LocalStack(ephemeral=True, backends=("async", "wsgi"), env=env) as stack:
            port = stack.services["front"].port
            page = f"http://127.0.0.1:{port}/-/dashboard"
            # Some history first, so that each line has a few points.
            load = Load(port).start()
            waitForData(
                port,
                lambda d: sum(1 for r in d["series"]["async"]["rate"] if r) >= 2,
                "two points under load",
            )
            during = DOM(runChromium(chromium, page, tmp_path / "during", "--dump-dom"))
            load.join()

            assert during.body["data-state"] == "drawn", during.body
            assert int(during.body["data-frames"]) >= 2  # drawn, then drawn again
            assert during.body["data-source"] == "front"
            assert set(during.canvases) == set(FIGURES)
            assert during.canvases["rate"] > 0 and during.canvases["replicas_up"] > 0
            # What the page shows is the data of the time it says, as the
            # worker whose points it drew has them.
            document = dataFrom(port, during.body["data-worker"])
            index = document["times"].index(float(during.body["data-time"]))
            for route in document["routes"]:
                for figure in FIGURES:
                    drawn = shown(during.cells[(route, figure)])
                    assert drawn == document["series"][route][figure][index], (route, figure)
            assert shown(during.cells[("async", "rate")]) > 0
            assert 0.02 <= shown(during.cells[("async", "p99")]) <= 1.0
            assert shown(during.cells[("async", "replicas_up")]) == 1
            assert shown(during.cells[("static", "replicas_up")]) in (0, 1)

            # Once the load is over: the totals on screen are the metrics'
            # (summed over both workers), and what the test itself sent.
            expected = {
                "async": {
                    "requests": load.sent["async"],
                    "errors": 0,
                    "cancellations": load.aborts,
                },
                "wsgi": {"requests": load.sent["wsgi"], "errors": load.errors, "cancellations": 0},
            }
            assert load.errors == load.sent["wsgi"] > 0
            _, totals = waitForTotals(port, expected)
            assert totals == expected
            waitUntilIdleEverywhere(port, "async")
            screenshot = tmp_path / "dashboard.png"
            after = DOM(
                runChromium(
                    chromium, page, tmp_path / "after", "--dump-dom", f"--screenshot={screenshot}"
                )
            )
            metrics = metricTotals(port)
            for route, figures in expected.items():
                for name, value in figures.items():
                    drawn = shown(after.cells[(route, "total_" + name)])
                    assert drawn == value == metrics[route][name], (route, name)
            assert shown(after.cells[("async", "in_flight")]) == 0
            assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert screenshot.stat().st_size > 20000, "the screenshot looks empty"
            print(f"dashboard screenshot: {screenshot}")

            # The landing page links the tools; its browser finds locust
            # running, then not.
            landing = f"http://127.0.0.1:{port}/"
            running = DOM(
                runChromium(chromium, landing, tmp_path / "landing", "--dump-dom", budget=1500)
            )
            assert running.byId["dashboard"]["href"] == "/-/dashboard"
            assert running.byId["locust"]["href"] == f"http://127.0.0.1:{locust.port}"
            assert running.byId["locust-state"]["data-state"] == "running"
            locust.close()
            gone = DOM(
                runChromium(chromium, landing, tmp_path / "landing-2", "--dump-dom", budget=1500)
            )
            assert gone.byId["locust-state"]["data-state"] == "down"
    finally:
        locust.close()
