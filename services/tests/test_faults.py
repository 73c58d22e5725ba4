"""
The fault switch (L{webstack.runtime.faults}): in memory on a L{Clock} with a
seeded random source, then over real sockets (a LocalStack whose async
service and front have admin listeners), then, marked compose, through the
containers with C{make fault}.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory

from webstack.runtime import faults
from webstack.runtime.config import ConfigError
from webstack.runtime.faults import (
    FaultError,
    FaultRule,
    FaultState,
    FaultSwitch,
    adminAddresses,
    adminListen,
    adminServices,
    adminSite,
    checkAdminListen,
    parseLatency,
    parseShare,
    workerNumber,
)
from webstack.runtime.metrics import HTTPMetrics
from webstack.runtime.site import RouteLabeler, WebSite

from .support import closedPort, request, waitFor


class Counted(Resource):
    """
    Answers C{ok} and counts what it renders: shows whether a request
    reached the real resource.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[bytes] = []

    def render_GET(self, request):
        self.rendered.append(request.path)
        return b"ok"


class Failing(Resource):
    isLeaf = True

    def render_GET(self, request):
        raise RuntimeError("the real resource failed")


def tree():
    """
    A root with C{/async/...}, C{/static/...} and C{/metrics} under it.
    """
    root = Resource()
    counted = Counted()
    for name in (b"async", b"static", b"metrics", b"healthz"):
        root.putChild(name, counted)
    root.putChild(b"failing", Failing())
    text = Resource()
    text.isLeaf = True
    text.render_GET = lambda request: b"compress me " * 100
    root.putChild(b"text", EncodingResourceWrapper(text, [GzipEncoderFactory()]))
    return root, counted


class World:
    """
    A real L{WebSite} on a L{Clock} with its fault switch (a seeded random
    source), and a way to send it requests over in-memory connections.
    """

    def __init__(self, seed: int = 7) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.root, self.counted = tree()
        self.site = WebSite(
            self.root,
            reactor=self.clock,
            metrics=HTTPMetrics(self.registry),
            routeLabeler=RouteLabeler(["/async/", "/static/", "/metrics"]),
        )
        self.switch = FaultSwitch(
            self.site,
            reactor=self.clock,
            registry=self.registry,
            random=random.Random(seed).random,
            name="test",
        )

    def send(self, path: bytes, method: bytes = b"GET", headers: bytes = b""):
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        channel.makeConnection(transport)
        channel.dataReceived(
            method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
        )
        return channel, transport

    def set(self, **values):
        self.switch.state.set(FaultRule.parse(**values))

    def sample(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0.0


def status(transport) -> int:
    value = transport.value()
    return int(value.split(b" ", 2)[1]) if value else 0


# The values an operator types.


@pytest.mark.parametrize(
    "given, seconds",
    [("200ms", 0.2), ("1.5s", 1.5), ("0.2", 0.2), (" 2 s ", 2.0), ("0", 0.0), (0.25, 0.25), (3, 3.0)],
)
def test_latencyIsReadInMillisecondsOrSeconds(given, seconds):
    assert parseLatency(given) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "given, says",
    [
        ("fast", "'fast' is not a duration"),
        ("-1s", "not a duration"),
        ("1h", "not a duration"),
        ("nan", "not a duration"),
        (float("inf"), "not a duration"),
        (-0.5, "not a duration"),
        (True, "not a duration"),
        ("301s", "too long: at most 300s"),
    ],
)
def test_aBadLatencySaysWhatIsAllowed(given, says):
    with pytest.raises(FaultError, match=says) as caught:
        parseLatency(given)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "given, share",
    [("5%", 0.05), ("0.05", 0.05), ("100%", 1.0), ("0", 0.0), ("12.5 %", 0.125), (1, 1.0)],
)
def test_aShareIsAPercentageOrAFraction(given, share):
    assert parseShare("errors", given) == pytest.approx(share)


@pytest.mark.parametrize(
    "given, says",
    [
        ("150%", "errors '150%' is out of range: a share is 0% to 100%"),
        ("5", "errors '5' is out of range"),
        ("some", "errors 'some' is not a share"),
        ("-5%", "not a share"),
        (float("nan"), "not a share"),
    ],
)
def test_aBadShareSaysWhatIsAllowed(given, says):
    with pytest.raises(FaultError, match=says):
        parseShare("errors", given)


def test_aRuleIsChecked():
    assert FaultRule.parse("/async/", "200ms", "5%", "1%") == FaultRule("/async/", 0.2, 0.05, 0.01)
    with pytest.raises(FaultError, match="add up to more than 100%"):
        FaultRule.parse("*", errors="80%", reset="30%")
    with pytest.raises(FaultError, match="not a path prefix"):
        FaultRule.parse("async", errors="5%")
    with pytest.raises(FaultError, match="not a path prefix"):
        FaultRule.parse("/a b/", errors="5%")
    with pytest.raises(FaultError, match="never faulted"):
        FaultRule.parse("/metrics", errors="5%")
    with pytest.raises(FaultError, match="never faulted"):
        FaultRule.parse("/-/readyz", errors="5%")


# Which rule a request falls under.


def test_theLongestPrefixWinsThenEveryRouteThenNone():
    state = FaultState()
    assert state.ruleFor(b"/async/delay") is None
    every = FaultRule.parse("*", errors="1%")
    asyncRule = FaultRule.parse("/async/", latency="1s")
    delayRule = FaultRule.parse("/async/delay", reset="2%")
    for rule in (every, asyncRule, delayRule):
        state.set(rule)
    assert state.ruleFor(b"/async/delay") == delayRule
    assert state.ruleFor(b"/async/deferred") == asyncRule
    assert state.ruleFor(b"/static/x") == every
    for ops in (b"/metrics", b"/healthz", b"/readyz", b"/-/readyz", b"/-/metrics"):
        assert state.ruleFor(ops) is None
    state.clear("/async/delay")
    assert state.ruleFor(b"/async/delay") == asyncRule
    state.set(FaultRule.parse("/async/"))  # all zero: clears it
    assert state.ruleFor(b"/async/delay") == every
    state.clear()
    assert not state and state.ruleFor(b"/static/x") is None


def test_theNumberOfRulesIsBounded():
    state = FaultState()
    for n in range(faults.MAX_RULES):
        state.set(FaultRule.parse(f"/r{n}/", errors="1%"))
    state.set(FaultRule.parse("/r0/", errors="2%"))  # replacing one is fine
    with pytest.raises(FaultError, match=f"at most {faults.MAX_RULES}"):
        state.set(FaultRule.parse("/one-more/", errors="1%"))


# The wrapper, on a Clock.


def test_withNoFaultSetTheSiteServesItsOwnRootUntouched():
    """
    The switch costs a request nothing while it is off: the site's resource
    is the service's own root, not a wrapper, and it is again once the last
    rule is cleared.
    """
    world = World()
    assert world.site.resource is world.root
    world.set(route="/async/", latency="200ms")
    assert world.site.resource is world.switch.wrapper
    world.switch.state.clear()
    assert world.site.resource is world.root
    channel, transport = world.send(b"/async/delay")
    assert status(transport) == 200 and b"x-fault" not in transport.value().lower()


def test_latencyHoldsTheRequestThenServesIt():
    world = World()
    world.set(route="/async/", latency="200ms")
    channel, transport = world.send(b"/async/delay")
    assert transport.value() == b"" and world.counted.rendered == []
    world.clock.advance(0.199)
    assert transport.value() == b""
    world.clock.advance(0.001)
    assert status(transport) == 200
    assert transport.value().endswith(b"ok")
    assert b"X-Fault: latency" in transport.value()
    assert world.counted.rendered == [b"/async/delay"]
    assert world.sample("faults_injected_total", kind="latency") == 1
    assert world.sample(
        "http_requests_total", route="/async/", method="GET", status="200"
    ) == 1
    assert world.sample("http_request_duration_seconds_sum", route="/async/") == pytest.approx(0.2)


def test_aClientThatLeavesDuringTheLatencyCancelsItsTimer():
    world = World()
    world.set(route="*", latency="5s")
    channel, transport = world.send(b"/static/file")
    assert len(world.clock.getDelayedCalls()) >= 1
    timers = [c for c in world.clock.getDelayedCalls() if c.getTime() == pytest.approx(5.0)]
    assert len(timers) == 1
    channel.connectionLost(Failure(ConnectionDone()))
    assert not timers[0].active()
    world.clock.advance(10)
    assert world.counted.rendered == []
    assert world.sample(
        "http_requests_total", route="/static/", method="GET", status="499"
    ) == 1
    assert world.sample("http_requests_in_flight") == 0


def test_routesWithoutARuleAndOpsPathsAreServedAtOnce():
    world = World()
    world.set(route="/async/", latency="1s", errors="100%")
    for path in (b"/static/x", b"/metrics", b"/healthz"):
        channel, transport = world.send(path)
        assert status(transport) == 200, path
    world.set(route="*", errors="100%")
    channel, transport = world.send(b"/metrics")
    assert status(transport) == 200
    channel, transport = world.send(b"/static/x")
    assert status(transport) == 500


def test_errorsAnswer500ToTheShareTheRandomSourceDraws():
    """
    One draw per request: below C{reset} resets, below C{reset + errors}
    fails, the rest pass.  With the same seed, the requests failed are
    exactly the draws below 25%.
    """
    world = World(seed=11)
    world.set(route="/async/", errors="25%")
    replay = random.Random(11)
    expected = []
    for _ in range(200):
        expected.append(500 if replay.random() < 0.25 else 200)
    got = [status(world.send(b"/async/x")[1]) for _ in range(200)]
    assert got == expected
    failed = expected.count(500)
    assert 30 < failed < 70
    assert world.sample("faults_injected_total", kind="error") == failed
    assert len(world.counted.rendered) == 200 - failed
    assert world.sample(
        "http_requests_total", route="/async/", method="GET", status="500"
    ) == failed


def test_anInjected500IsTheStacksOwnErrorPage():
    world = World()
    world.set(route="/async/", errors="100%")
    channel, transport = world.send(b"/async/x", headers=b"Accept: application/json\r\n")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert status(transport) == 500
    assert b"X-Fault: error" in head
    assert json.loads(body)["detail"].startswith("A fault was injected")
    assert b"Content-Length: %d" % len(body) in head
    assert world.counted.rendered == []


def test_resetAbortsTheConnectionUnanswered():
    world = World()
    world.set(route="/async/", reset="100%")
    channel, transport = world.send(b"/async/x")
    assert transport.disconnected
    assert transport.value() == b""
    channel.connectionLost(Failure(ConnectionDone()))
    assert world.sample("faults_injected_total", kind="reset") == 1
    assert world.sample(
        "http_requests_total", route="/async/", method="GET", status="499"
    ) == 1
    assert world.counted.rendered == []


def test_latencyThenAnErrorOrAReset():
    world = World()
    world.set(route="/async/", latency="1s", errors="100%")
    channel, transport = world.send(b"/async/x")
    assert transport.value() == b""
    world.clock.advance(1)
    assert status(transport) == 500
    world.set(route="/async/", latency="1s", reset="100%")
    channel, transport = world.send(b"/async/x")
    assert not transport.disconnected
    world.clock.advance(1)
    assert transport.disconnected and transport.value() == b""
    assert world.sample("faults_injected_total", kind="latency") == 2


def test_aResourceFailingAfterTheLatencyGets500():
    world = World()
    world.set(route="*", latency="100ms")
    channel, transport = world.send(b"/failing")
    world.clock.advance(0.1)
    assert status(transport) == 500


def test_theRealResourceStillChoosesItsEncoding():
    world = World()
    world.set(route="*", latency="100ms")
    channel, transport = world.send(b"/text", headers=b"Accept-Encoding: gzip\r\n")
    world.clock.advance(0.1)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert status(transport) == 200
    assert b"Content-Encoding: gzip" in head


def test_headAndUnknownMethodsPassThroughTheWrapper():
    world = World()
    world.set(route="/async/", latency="10ms")
    channel, transport = world.send(b"/async/x", method=b"HEAD")
    world.clock.advance(0.01)
    assert status(transport) == 200 and not transport.value().endswith(b"ok")
    channel, transport = world.send(b"/async/x", method=b"PROPFIND")
    world.clock.advance(0.01)
    assert status(transport) == 405


def test_theStateIsInTheMetrics():
    world = World()
    assert world.sample("fault_rules") == 0
    world.set(route="/async/", latency="200ms", errors="5%")
    world.set(route="*", reset="1%")
    assert world.sample("fault_rules") == 2
    assert world.sample("fault_latency_seconds", route="/async/") == pytest.approx(0.2)
    assert world.sample("fault_error_ratio", route="/async/") == pytest.approx(0.05)
    assert world.sample("fault_reset_ratio", route="/async/") == 0
    assert world.sample("fault_reset_ratio", route="*") == pytest.approx(0.01)
    world.switch.state.clear("*")
    assert world.registry.get_sample_value("fault_reset_ratio", {"route": "*"}) is None
    for kind in faults.KINDS:
        assert world.registry.get_sample_value("faults_injected_total", {"kind": kind}) == 0


# The admin listener's resource, in memory.


def admin(world, method: bytes, path: bytes, body: bytes = b""):
    site = adminSite(world.switch)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50001))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(
        method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    head, _, rest = transport.value().partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        rest = http_unchunk(rest)
    return status(transport), rest


def http_unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2 :]
    return out


def test_theAdminResourceSetsShowsAndClears():
    world = World()
    code, body = admin(world, b"GET", b"/faults")
    assert code == 200 and json.loads(body)["rules"] == {}
    code, body = admin(
        world, b"PUT", b"/faults", b'{"route": "/async/", "latency": "200ms", "errors": "5%"}'
    )
    assert code == 200
    assert json.loads(body)["rules"] == {"/async/": {"latency": 0.2, "errors": 0.05, "reset": 0.0}}
    code, body = admin(world, b"POST", b"/faults", b'{"reset": 0.01}')
    assert set(json.loads(body)["rules"]) == {"/async/", "*"}
    code, body = admin(world, b"DELETE", b"/faults?route=%2Fasync%2F")
    assert set(json.loads(body)["rules"]) == {"*"}
    code, body = admin(world, b"DELETE", b"/faults")
    assert json.loads(body)["rules"] == {} and world.site.resource is world.root


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"errors": "150%"}', "errors '150%' is out of range"),
        (b'{"latency": "fast"}', "latency 'fast' is not a duration"),
        (b'{"latency": 1, "color": "red"}', "unknown key(s) color"),
        (b"not json", "not JSON"),
        (b"[1]", "a JSON object"),
        (b'{"route": 5, "errors": "1%"}', "not a path prefix"),
        (b"{" + b" " * 5000 + b"}", "over 4096 bytes"),
    ],
)
def test_theAdminResourceRefusesBadInputWith400(body, says):
    world = World()
    code, answer = admin(world, b"PUT", b"/faults", body)
    assert code == 400
    assert says in json.loads(answer)["error"]
    assert world.site.resource is world.root


# Where the admin listener is.


def test_eachWorkerHasItsOwnAdminPort():
    assert adminListen("", 3) == ""
    assert adminListen("tcp:9000:interface=127.0.0.1", 1) == "tcp:9000:interface=127.0.0.1"
    assert adminListen("tcp:9000:interface=127.0.0.1", 2) == "tcp:9001:interface=127.0.0.1"
    assert adminListen("tcp:0:interface=127.0.0.1", 2) == "tcp:0:interface=127.0.0.1"
    assert adminListen("tcp6:port=9000:interface=\\:\\:1", 3) == "tcp6:9002:interface=\\:\\:1"
    assert workerNumber(None) == 1 and workerNumber(b"front/2/4242") == 2
    assert adminAddresses("tcp:9000:interface=127.0.0.1", 2) == [
        ("127.0.0.1", 9000),
        ("127.0.0.1", 9001),
    ]
    with pytest.raises(ConfigError, match="off"):
        adminAddresses("", 1)
    with pytest.raises(ConfigError, match="--port"):
        adminAddresses("tcp:0:interface=127.0.0.1", 1)


@pytest.mark.parametrize(
    "description, workers, says",
    [
        ("tcp:9000", 1, "loopback only"),
        ("tcp:9000:interface=0.0.0.0", 1, "loopback only"),
        ("tcp:9000:interface=localhost", 1, "loopback only"),
        ("unix:/tmp/faults", 1, "tcp or tcp6 only"),
        ("tcp:interface=127.0.0.1", 1, "no port"),
        ("tcp:65535:interface=127.0.0.1", 2, "over 65535"),
        ("tcp:9000:interface=127.0.0.1:colour=red", 1, "not a valid endpoint"),
    ],
)
def test_aBadAdminListenIsRefusedAtStartUp(description, workers, says):
    with pytest.raises(ConfigError, match=says) as caught:
        checkAdminListen(Clock(), description, workers)
    assert str(caught.value).startswith(f"admin_listen = {description!r}")


def test_noAdminServiceWhenOff():
    world = World()
    assert adminServices(Clock(), "", world.switch) == []
    [service] = adminServices(Clock(), "tcp:9000:interface=127.0.0.1", world.switch, b"x/3/1")
    assert service._description == "tcp:9002:interface=127.0.0.1"


# The command line's checks (no service needed).


SRC = str(Path(faults.__file__).resolve().parents[2])
CONFIG = str(Path(SRC).parents[1] / "config" / "stack.toml")


def runCLI(*args, **env):
    """
    C{python -m webstack.runtime.faults ARGS}, as C{docker exec} runs it.
    """
    return subprocess.run(
        [sys.executable, "-m", "webstack.runtime.faults", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC, "WEBSTACK_CONFIG": CONFIG, **env},
    )


def cli(*args, status: int = 0) -> str:
    """
    The command line's C{main}, in this process; its standard output.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        got = faults.main(list(args))
    assert got == status, err.getvalue()
    return out.getvalue() if status == 0 else err.getvalue()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--latency", "fast"], "latency 'fast' is not a duration"),
        (["--errors", "150%"], "errors '150%' is out of range"),
        (["--reset", "x"], "reset 'x' is not a share"),
        (["--route", "async"], "route 'async' is not a path prefix"),
    ],
)
def test_theCommandLineRefusesABadValueWithOneLineAndStatus2(args, says):
    for command in (["check"], ["set", "--service", "async"]):
        lines = cli(*command, *args, status=2).splitlines()
        assert len(lines) == 1 and says in lines[0], lines


def test_theRealCommandRefusesABadValueTheSameWay():
    done = runCLI("check", "--latency", "fast")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "faults: latency 'fast' is not a duration: give milliseconds or seconds,"
        " e.g. 200ms, 1.5s or 0.2\n"
    )


def test_theCommandLineSaysWhenTheSwitchIsOff(monkeypatch):
    monkeypatch.setenv("WEBSTACK_CONFIG", CONFIG)
    monkeypatch.setenv("WEBSTACK_ASYNC_ADMIN_LISTEN", "")
    err = cli("set", "--service", "async", "--latency", "1s", status=2)
    assert 'admin_listen is "" (off)' in err
    monkeypatch.setenv("WEBSTACK_ASYNC_ADMIN_LISTEN", "tcp:9000")
    err = cli("show", "--service", "async", status=2)
    assert "loopback only" in err
    assert cli("check", "--latency", "200ms", "--errors", "5%").strip() == (
        "*: latency 200ms, errors 5%, reset 0%"
    )


# Over real sockets: the async service and the front as twistd processes,
# each with an admin listener on a port the kernel chose, read from its
# "admin_listening" log lines.


def adminPorts(process, count: int = 1) -> list[int]:
    """
    The admin ports a service's process (or its C{count} workers) logged.
    """

    def logged():
        ports = sorted({record["port"] for record in process.events("admin_listening")})
        return ports if len(ports) >= count else None

    return waitFor(logged, timeout=30, what=f"{count} admin_listening line(s) of {process.name}")


def get(port: int, path: str, timeout: float = 10):
    """
    (status, headers, body, seconds) of one GET on its own connection.
    """
    started = time.monotonic()
    response, body = request(port, "GET", path, timeout=timeout)
    return response.status, response, body, time.monotonic() - started


def metricValue(port: int, name: str, **labels) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    _, _, body, _ = get(port, "/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


@pytest.fixture(scope="module")
def live():
    from webstack.localstack import LocalStack
    from webstack.runtime.workers import workerCount
    from webstack.runtime.config import readConfig

    env = {
        "WEBSTACK_ASYNC_ADMIN_LISTEN": "tcp:0:interface=127.0.0.1",
        "WEBSTACK_FRONT_ADMIN_LISTEN": "tcp:0:interface=127.0.0.1",
    }
    stack = LocalStack(ephemeral=True, env=env, backends=("async",)).start()
    try:
        frontWorkers = workerCount(int(readConfig(stack.config)["front"].get("workers", 1)))
        yield {
            "stack": stack,
            "front": stack.services["front"].port,
            "async": stack.services["async"].port,
            "admin": adminPorts(stack.services["async"])[0],
            "frontAdmin": adminPorts(stack.services["front"], frontWorkers),
        }
    finally:
        stack.stop()


@pytest.fixture
def world(live):
    yield live
    ports = [str(p) for p in [live["admin"], *live["frontAdmin"]]]
    cli("clear", *(arg for p in ports for arg in ("--port", p)))


@pytest.mark.integration
def test_latencyOnARouteIsAddedThroughTheFront(world):
    front, admin = world["front"], world["admin"]
    status, response, _, _ = get(front, "/async/stats")
    assert status == 200 and response.getheader("x-fault") is None
    out = cli("set", "--port", str(admin), "--route", "/async/", "--latency", "400ms")
    assert "/async/: latency 400ms, errors 0%, reset 0%" in out
    for _ in range(3):
        status, response, _, seconds = get(front, "/async/stats")
        assert status == 200
        assert response.getheader("x-fault") == "latency"
        assert seconds >= 0.4
    # Health, readiness and metrics stay as they were.
    status, response, _, _ = get(world["async"], "/readyz")
    assert status == 200 and response.getheader("x-fault") is None
    assert metricValue(world["async"], "fault_latency_seconds", route="/async/") == 0.4
    assert metricValue(world["async"], "fault_rules") == 1
    assert metricValue(world["async"], "faults_injected_total", kind="latency") >= 3
    assert "no faults" in cli("clear", "--port", str(admin))
    status, response, _, _ = get(front, "/async/stats")
    assert status == 200 and response.getheader("x-fault") is None
    assert metricValue(world["async"], "fault_rules") == 0


@pytest.mark.integration
def test_aClientLeavingDuringTheLatencyIsCountedAndCostsNothingAfter(world):
    admin, backend = world["admin"], world["async"]
    cli("set", "--port", str(admin), "--route", "/async/", "--latency", "5s")
    before = asyncStarted(backend)
    with pytest.raises(OSError):
        get(backend, "/async/interruptible?seconds=1", timeout=0.5)
    # The request never reached the async resource, then or later.
    cli("clear", "--port", str(admin))
    aborted = lambda: metricValue(  # noqa: E731
        backend, "http_requests_total", route="/async/interruptible", method="GET", status="499"
    )
    waitFor(aborted, what="the abandoned request counted as 499")
    assert asyncStarted(backend) == before


def asyncStarted(port: int) -> int:
    _, _, body, _ = get(port, "/async/stats")
    return json.loads(body)["totals"]["started"]


@pytest.mark.integration
def test_errorsAnswer500ThroughTheFrontAndOpsPathsStayUp(world):
    front, admin, backend = world["front"], world["admin"], world["async"]
    cli("set", "--port", str(admin), "--errors", "100%")
    for _ in range(5):
        status, response, body, _ = get(front, "/async/stats")
        assert status == 500 and response.getheader("x-fault") == "error"
    for path in ("/healthz", "/readyz", "/metrics"):
        assert get(backend, path)[0] == 200, path
    assert metricValue(backend, "fault_error_ratio", route="*") == 1.0
    assert metricValue(backend, "faults_injected_total", kind="error") >= 5
    cli("clear", "--port", str(admin))
    assert get(front, "/async/stats")[0] == 200


@pytest.mark.integration
def test_resetAbortsTheConnection(world):
    front, admin, backend = world["front"], world["admin"], world["async"]
    cli("set", "--port", str(admin), "--route", "/async/", "--reset", "100%")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        get(backend, "/async/stats")
    status, response, _, _ = get(front, "/async/stats")
    assert status == 502, status
    assert metricValue(backend, "faults_injected_total", kind="reset") >= 2
    cli("clear", "--port", str(admin))
    assert get(front, "/async/stats")[0] == 200


@pytest.mark.integration
def test_everyWorkerOfTheFrontHasItsOwnSwitch(world):
    front, ports = world["front"], world["frontAdmin"]
    args = [arg for p in ports for arg in ("--port", str(p))]
    out = cli("set", *args, "--route", "/async/", "--errors", "100%")
    assert out.count("/async/: latency 0ms, errors 100%") == len(ports)
    # Whichever worker accepts, the front answers 500 itself: the backend
    # never sees the request.
    for _ in range(20):
        status, response, _, _ = get(front, "/async/stats")
        assert status == 500 and response.getheader("x-fault") == "error"
    assert get(front, "/-/readyz")[0] == 200
    cli("clear", *args)
    for _ in range(5):
        assert get(front, "/async/stats")[0] == 200


@pytest.mark.integration
def test_theCommandLineFindsTheSwitchFromTheServicesSettings(world):
    """
    What C{make fault} runs in a container: C{--service} and the service's
    own C{admin_listen} (from the environment here, as in compose).
    """
    admin = world["admin"]
    listen = {"WEBSTACK_ASYNC_ADMIN_LISTEN": f"tcp:{admin}:interface=127.0.0.1"}
    done = runCLI("set", "--service", "async", "--latency", "10ms", **listen)
    assert done.returncode == 0, done.stderr
    assert f"async 127.0.0.1:{admin} (" in done.stdout
    assert "*: latency 10ms" in done.stdout
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WEBSTACK_CONFIG", CONFIG)
        for name, value in listen.items():
            patch.setenv(name, value)
        assert "*: latency 10ms" in cli("show", "--service", "async")
        assert "no faults" in cli("clear", "--service", "async")


@pytest.mark.integration
def test_theCommandLineSaysWhenNoSwitchAnswers():
    lines = cli("show", "--port", str(closedPort()), status=1).splitlines()
    assert len(lines) == 1 and "cannot reach the fault switch" in lines[0]


@pytest.mark.integration
def test_anAdminListenOffLoopbackStopsTheServiceAtStartUp():
    from webstack.localstack import TWISTD

    done = subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "webstack-async"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": SRC,
            "WEBSTACK_ASYNC_LISTEN": "tcp:0:interface=127.0.0.1",
            "WEBSTACK_ASYNC_ADMIN_LISTEN": "tcp:9000:interface=0.0.0.0",
        },
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "webstack-async: admin_listen = 'tcp:9000:interface=0.0.0.0' is invalid: the fault"
        " switch has no password, so it listens on loopback only (interface=127.0.0.1 or"
        " interface=\\:\\:1)"
    ]


# In the containers: `make fault` and `make fault-clear` through docker exec,
# against a stack of their own (project webstack-faults on port 18091, so
# that neither a developer's stack nor test_compose's is touched).

COMPOSE_PROJECT = "webstack-faults"
COMPOSE_PORT = 18091
ROOT = Path(SRC).parents[1]


def engineAnswers() -> bool:
    import shutil

    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def makeTarget(*args, timeout=900, check=True):
    done = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "COMPOSE_PROJECT_NAME": COMPOSE_PROJECT,
            "WEBSTACK_PUBLISH": f"127.0.0.1:{COMPOSE_PORT}",
            "WEBSTACK_PROMETHEUS_PUBLISH": "127.0.0.1:0",
            "MONITORING": "0",
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, f"make {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def composeContainers(service: str) -> list[str]:
    return subprocess.run(
        [
            "docker", "ps", "--format", "{{.Names}}",
            "--filter", f"label=com.docker.compose.project={COMPOSE_PROJECT}",
            "--filter", f"label=com.docker.compose.service={service}",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()


@pytest.fixture(scope="module")
def containersUp():
    if not engineAnswers():
        pytest.skip("no Docker engine answers on this machine")
    makeTarget("down")
    try:
        makeTarget("up")
        makeTarget("scale", "SERVICE=async", "N=2")
        yield COMPOSE_PORT
    finally:
        makeTarget("down", check=False)


def servedBy(port: int, path: str, count: int) -> list[tuple[int, str, str | None]]:
    answers = []
    for _ in range(count):
        status, response, _, _ = get(port, path)
        answers.append((status, response.getheader("x-served-by"), response.getheader("x-fault")))
    return answers


def servedByEach(port: int, path: str, replicas: int, seconds: float):
    """
    L{servedBy} one request at a time until C{replicas} replicas have
    answered and 30 answers are in, for at most C{seconds}.
    """
    answers = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answers += servedBy(port, path, 1)
        if len(answers) >= 30 and len({by for _, by, _ in answers}) >= replicas:
            break
    return answers


@pytest.mark.compose
def test_makeFaultSlowsAndFailsEveryReplicaOrOne(containersUp):
    port = containersUp
    replicas = composeContainers("async")
    assert len(replicas) == 2
    done = makeTarget("fault", "SERVICE=async", "LATENCY=300ms", "ROUTE=/async/")
    assert done.stdout.count("async 127.0.0.1:9000 (") == 2, done.stdout
    for status, _, fault in servedBy(port, "/async/stats", 6):
        assert (status, fault) == (200, "latency")
    assert min(get(port, "/async/stats")[3] for _ in range(3)) >= 0.3

    # One replica only: the other answers as usual.
    makeTarget("fault-clear", "SERVICE=async")
    done = makeTarget("fault", "SERVICE=async", "ERRORS=100%", "REPLICA=2")
    assert done.stdout.count("async 127.0.0.1:9000 (") == 1, done.stdout
    # Both replicas were slow a moment ago: the front sends new requests to
    # the one that first answers fast until the other's latency estimate
    # decays (webstack.front.upstreams, a few seconds).  Ask until both have
    # answered.
    answers = servedByEach(port, "/async/stats", replicas=2, seconds=20)
    failing = {by for status, by, _ in answers if status == 500}
    assert len(failing) == 1, answers
    assert all(fault == "error" for status, _, fault in answers if status == 500)
    assert any(status == 200 for status, _, _ in answers)

    # The state is in each replica's /metrics (read inside the container:
    # the backends are not published).
    def metrics(container: str) -> str:
        return subprocess.run(
            [
                "docker", "exec", container, "python", "-c",
                "import urllib.request; print(urllib.request.urlopen("
                "'http://127.0.0.1:8080/metrics').read().decode())",
            ],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout

    ruled = [c for c in replicas if 'fault_error_ratio{route="*"} 1.0' in metrics(c)]
    assert len(ruled) == 1

    makeTarget("fault-clear")
    assert {status for status, _, _ in servedBy(port, "/async/stats", 10)} == {200}
    assert all("fault_rules 0.0" in metrics(c) for c in replicas)


@pytest.mark.compose
def test_makeFaultSetsEveryWorkerOfTheFront(containersUp):
    port = containersUp
    done = makeTarget("fault", "SERVICE=front", "ERRORS=100%", "ROUTE=/static/")
    workers = done.stdout.count("front 127.0.0.1:")
    assert workers >= 2, done.stdout
    for status, _, fault in servedBy(port, "/static/", 20):
        assert (status, fault) == (500, "error")
    makeTarget("fault-clear", "SERVICE=front")
    assert {status for status, _, _ in servedBy(port, "/static/", 10)} == {200}


@pytest.mark.compose
def test_makeFaultRefusesABadValueWithOneLineAndStatus2(containersUp):
    for values, says in (
        (["LATENCY=fast"], "faults: latency 'fast' is not a duration"),
        (["ERRORS=150%"], "faults: errors '150%' is out of range"),
    ):
        done = makeTarget("fault", "SERVICE=async", *values, check=False)
        assert done.returncode == 2
        ours = [line for line in done.stderr.splitlines() if not line.startswith("make")]
        assert len(ours) == 1 and ours[0].startswith(says), done.stderr


@pytest.mark.compose
def test_theSwitchIsOnlyOnTheContainersLoopback(containersUp):
    """
    Another container (the front, on the same network) cannot reach a
    backend's switch: it listens on that container's 127.0.0.1 only.
    """
    [front] = composeContainers("front")
    done = subprocess.run(
        [
            "docker", "exec", front, "python", "-c",
            "import socket\n"
            "try:\n"
            "    socket.create_connection(('async', 9000), timeout=5)\n"
            "    print('reached')\n"
            "except OSError as e:\n"
            "    print('refused', type(e).__name__)\n",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert done.stdout.startswith("refused"), done
