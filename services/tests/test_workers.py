"""
Several workers on one listening socket (L{webstack.runtime.workers}).

In memory first: the parent's restarts and stop against a fake reactor whose
time is a L{Clock} (no test sleeps), the request and log tagging.  Then real
processes on loopback: a front with two workers in front of a recording
upstream, each worker told apart by its C{X-Worker} header; every wait is a
bounded poll.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
    ReactorNotRunning,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel
from twisted.web.http_headers import Headers

from webstack.localstack import TWISTD, LocalStack
from webstack.runtime.service import stopReactor
from webstack.runtime.workers import (
    KILL_MARGIN,
    LISTEN_FD,
    MULTIPROC_ENV,
    RestartBackoff,
    WorkerCommand,
    WorkerLogObserver,
    WorkerParent,
    cpuCount,
    cpuQuota,
    workerCount,
    workerRequestFactory,
)

from .support import EchoUpstream, rawSend, readAll, request, waitFor

ROOT = Path(__file__).resolve().parents[2]


# The restart backoff.


def test_backoffDoublesForWorkersThatDieAtOnce():
    """
    A worker that keeps dying as soon as it starts is restarted after 0.1,
    0.2, 0.4... seconds, never more than C{maximum} apart.
    """
    clock = Clock()
    backoff = RestartBackoff(clock, initial=0.1, maximum=1.0, stableAfter=10.0)
    delays = []
    for _ in range(6):
        backoff.started(1)
        clock.advance(0.5)
        delays.append(backoff.delayAfterExit(1))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoffStaysAtItsMaximumForever():
    clock = Clock()
    backoff = RestartBackoff(clock, initial=0.1, maximum=30.0)
    for _ in range(5000):
        backoff.started(1)
        delay = backoff.delayAfterExit(1)
    assert delay == 30.0


def test_backoffForgivesAWorkerThatRanLongEnough():
    clock = Clock()
    backoff = RestartBackoff(clock, initial=0.1, maximum=30.0, stableAfter=10.0)
    for _ in range(3):
        backoff.started(1)
        backoff.delayAfterExit(1)
    backoff.started(1)
    clock.advance(10.0)
    assert backoff.delayAfterExit(1) == 0.1


def test_backoffIsPerWorker():
    clock = Clock()
    backoff = RestartBackoff(clock)
    backoff.started(1)
    backoff.started(2)
    assert backoff.delayAfterExit(1) == 0.1
    assert backoff.delayAfterExit(1) == 0.2
    assert backoff.delayAfterExit(2) == 0.1


def test_zeroWorkersMeansOnePerCPU():
    assert workerCount(0) == cpuCount() >= 1
    assert workerCount(3) == 3


def cgroup(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "files, quota",
    [
        ({}, None),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu.max": "garbage\n"}, None),
    ],
)
def test_theCPUQuotaOfTheContainersCgroup(tmp_path, files, quota):
    assert cpuQuota(cgroup(tmp_path, files)) == quota


def test_aQuotaCapsTheCPUCountRoundedUp(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert cpuCount(tmp_path) == 4  # no quota: the affinity mask
    assert cpuCount(cgroup(tmp_path / "a", {"cpu.max": "50000 100000\n"})) == 1
    assert cpuCount(cgroup(tmp_path / "b", {"cpu.max": "150000 100000\n"})) == 2
    assert cpuCount(cgroup(tmp_path / "c", {"cpu.max": "800000 100000\n"})) == 4


# The parent, against a fake reactor.


class FakeSocket:
    family = socket.AF_INET


class FakePort:
    def __init__(self, journal):
        self.journal = journal
        self.socket = FakeSocket()
        self.reading = True

    def stopReading(self):
        self.reading = False

    def fileno(self):
        return 42

    def getHost(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 8080)

    def stopListening(self):
        self.journal.append("port closed")


class FakeEndpoint:
    def __init__(self, port):
        self.port = port
        self.factory = None

    def listen(self, factory):
        from twisted.internet.defer import succeed

        self.factory = factory
        return succeed(self.port)


class FakeProcess:
    def __init__(self, reactor, protocol, pid, args, env, childFDs):
        self.reactor = reactor
        self.protocol = protocol
        self.pid = pid
        self.args = args
        self.env = env
        self.childFDs = childFDs
        self.signals = []
        self.ended = False

    def signalProcess(self, name):
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(name)
        self.reactor.journal.append(f"{name} {self.pid}")

    def end(self, status=0, signal=None):
        self.ended = True
        if status == 0 and signal is None:
            reason = ProcessDone(0)
        else:
            reason = ProcessTerminated(status, signal)
        self.protocol.processEnded(Failure(reason))


class FakeReactor(Clock):
    """
    A L{Clock} that also spawns (pretend) processes.
    """

    def __init__(self):
        super().__init__()
        self.journal = []
        self.processes = []
        self._pids = iter(range(1000, 2000))

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None):
        process = FakeProcess(self, protocol, next(self._pids), args, env, childFDs)
        self.processes.append(process)
        protocol.makeConnection(process)
        return process

    def live(self):
        return [p for p in self.processes if not p.ended]


def command(index, family, metricsDir):
    return "python", ["python", "-m", "worker", str(index)], {MULTIPROC_ENV: metricsDir}


@pytest.fixture
def parent(tmp_path):
    reactor = FakeReactor()
    port = FakePort(reactor.journal)
    metricsDir = tmp_path / "metrics"
    metricsDir.mkdir()
    service = WorkerParent(
        name="webstack-test",
        reactor=reactor,
        endpoint=FakeEndpoint(port),
        count=2,
        command=command,
        drainTimeout=10.0,
        backoff=RestartBackoff(reactor, initial=0.1, maximum=30.0, stableAfter=10.0),
        makeMetricsDir=lambda: str(metricsDir),
    )
    service.privilegedStartService()
    service.startService()
    return service, reactor, port, metricsDir


def stopping(service) -> list:
    """
    Stop C{service}; the list gets the result once the stop is complete.
    """
    done: list = []
    service.stopService().addBoth(done.append)
    return done


def test_theParentHoldsTheSocketAndNeverAccepts(parent):
    service, reactor, port, _ = parent
    assert service.port is port
    assert not port.reading
    assert len(reactor.processes) == 2


def test_eachWorkerGetsTheSocketAndTheMetricsDirectory(parent):
    service, reactor, port, metricsDir = parent
    for index, process in enumerate(reactor.processes, start=1):
        assert process.childFDs[LISTEN_FD] == port.fileno()
        assert process.childFDs[0] == "w"
        assert process.childFDs[1] == 1 and process.childFDs[2] == 2
        assert process.env[MULTIPROC_ENV] == str(metricsDir)
        assert process.args[-1] == str(index)
    assert sorted(service.workers) == [1, 2]


def test_aDeadWorkerIsRestartedAfterTheBackoff(parent):
    service, reactor, _, _ = parent
    first = reactor.processes[0]
    first.end(status=None, signal=9)
    assert 1 not in service.workers
    assert len(reactor.processes) == 2
    reactor.advance(0.05)
    assert len(reactor.processes) == 2
    reactor.advance(0.05)
    assert len(reactor.processes) == 3
    restarted = reactor.processes[2]
    assert restarted.args[-1] == "1"
    assert service.workers[1].pid == restarted.pid != first.pid


def test_aWorkerThatKeepsDyingIsRestartedLessAndLessOften(parent):
    service, reactor, _, _ = parent
    waited = []
    for _ in range(5):
        current = service.workers[1]
        current.transport.end(status=1)
        (restart,) = reactor.getDelayedCalls()
        waited.append(round(restart.getTime() - reactor.seconds(), 6))
        reactor.advance(waited[-1])
        assert service.workers[1] is not current
    assert waited == [0.1, 0.2, 0.4, 0.8, 1.6]


def test_aDeadWorkersLiveGaugesAreDropped(parent):
    """
    Its in-flight and open-connection figures (C{livesum}) end with it; its
    counters stay in the sums.
    """
    service, reactor, _, metricsDir = parent
    pid = reactor.processes[0].pid
    live = metricsDir / f"gauge_livesum_{pid}.db"
    counter = metricsDir / f"counter_{pid}.db"
    live.write_bytes(b"")
    counter.write_bytes(b"")
    reactor.processes[0].end(status=None, signal=9)
    assert not live.exists()
    assert counter.exists()


def test_stopClosesTheSocketFirstThenStopsEveryWorker(parent):
    service, reactor, _, metricsDir = parent
    reactor.journal.clear()
    d = stopping(service)
    pids = [p.pid for p in reactor.processes]
    assert reactor.journal == ["port closed", f"TERM {pids[0]}", f"TERM {pids[1]}"]
    assert not d
    reactor.processes[0].end()
    assert not d
    reactor.processes[1].end()
    assert d == [None]
    assert not metricsDir.exists()
    # No restart for workers that were told to stop.
    reactor.advance(60)
    assert len(reactor.processes) == 2


def test_stopCancelsAPendingRestart(parent):
    service, reactor, _, _ = parent
    reactor.processes[0].end(status=None, signal=9)
    d = stopping(service)
    reactor.processes[1].end()
    assert d == [None]
    reactor.advance(60)
    assert len(reactor.processes) == 2


def test_aWorkerThatDoesNotDrainInTimeIsKilled(parent):
    service, reactor, _, _ = parent
    d = stopping(service)
    reactor.processes[0].end()
    reactor.advance(10.0 + KILL_MARGIN - 0.5)
    assert reactor.processes[1].signals == ["TERM"]
    reactor.advance(0.5)
    assert reactor.processes[1].signals == ["TERM", "KILL"]
    assert not d
    reactor.processes[1].end(status=None, signal=9)
    assert d == [None]


def test_aWorkerAlreadyGoneIsNotAnError(parent):
    service, reactor, _, _ = parent
    reactor.processes[0].ended = True  # exited, its end not yet reported
    d = stopping(service)
    reactor.processes[0].protocol.processEnded(Failure(ProcessDone(0)))
    reactor.processes[1].end()
    assert d == [None]


def test_aSpawnThatFailsIsRetried(parent):
    service, reactor, _, _ = parent
    real = reactor.spawnProcess
    failures = [OSError(24, "Too many open files")]

    def spawnProcess(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    reactor.spawnProcess = spawnProcess
    reactor.processes[0].end(status=1)
    reactor.advance(0.1)
    assert 1 not in service.workers
    reactor.advance(0.2)
    assert 1 in service.workers


def test_aSecondStopOfTheReactorIsHarmless():
    """
    A second SIGTERM while draining calls L{stopReactor} again.
    """

    class Reactor:
        stops = 0

        def stop(self):
            self.stops += 1
            if self.stops > 1:
                raise ReactorNotRunning()

    reactor = Reactor()
    stopReactor(reactor)
    stopReactor(reactor)
    assert reactor.stops == 2


def test_theWorkerCommandRunsThisPythonWithTheMetricsDirectory():
    make = WorkerCommand(
        moduleName="webstack.front.app",
        tapname="webstack-front",
        configFile="/etc/stack.toml",
        logger="webstack.runtime.logs.jsonLogger",
        environ={"PATH": "/bin", "PYTHONPATH": "/elsewhere"},
    )
    executable, args, env = make(3, socket.AF_INET6, "/tmp/m")
    assert executable == sys.executable == args[0]
    assert args[1:3] == ["-m", "webstack.runtime.workers"]
    assert args[args.index("--index") + 1] == "3"
    assert args[args.index("--family") + 1] == str(int(socket.AF_INET6))
    assert args[args.index("--logger") + 1] == "webstack.runtime.logs.jsonLogger"
    assert env[MULTIPROC_ENV] == "/tmp/m"
    assert env["PATH"] == "/bin"
    assert env["PYTHONPATH"].split(os.pathsep)[-1] == "/elsewhere"
    assert str(ROOT / "services" / "src") in env["PYTHONPATH"].split(os.pathsep)
    assert "--reactor" not in args  # the parent named none: the default


def frontCommand(**given) -> WorkerCommand:
    """
    The front's worker command with nothing else set, but for C{given}.
    """
    return WorkerCommand(
        **{
            "moduleName": "webstack.front.app",
            "tapname": "webstack-front",
            "configFile": "/etc/stack.toml",
            "logger": None,
            "environ": {},
            **given,
        }
    )


def test_theWorkersRunOnTheParentsReactor():
    _, args, _ = frontCommand(reactor="webstack")(1, socket.AF_INET, "/tmp/m")
    assert args[args.index("--reactor") + 1] == "webstack"


def test_aWorkerRunsUnderTheWrapperItIsGiven():
    """
    C{WEBSTACK_WORKER_WRAPPER}: the worker's command line after the
    wrapper's own arguments (callgrind, for C{make bench-instructions}).
    """
    make = frontCommand(wrapper=("/usr/bin/valgrind", "--tool=callgrind"))
    executable, args, _ = make(1, socket.AF_INET, "/tmp/m")
    assert executable == "/usr/bin/valgrind"
    assert args[:4] == ["/usr/bin/valgrind", "--tool=callgrind", sys.executable, "-m"]


def test_theWorkersWrapperIsReadFromTheEnvironment(capsys):
    from webstack.runtime.workers import WRAPPER_ENV, workerWrapper

    assert workerWrapper({}) == ()
    assert workerWrapper({WRAPPER_ENV: "valgrind --tool=callgrind '--log-file=a b'"}) == (
        "valgrind", "--tool=callgrind", "--log-file=a b")
    with pytest.raises(SystemExit) as exited:
        workerWrapper({WRAPPER_ENV: "valgrind '--tool"})
    assert exited.value.code == 2
    assert f"{WRAPPER_ENV} = " in capsys.readouterr().err


# What a worker adds to its responses and log lines.


def test_aWorkersResponsesSayWhichWorker():
    cls = workerRequestFactory(Request, b"front/2/1234")
    request = cls(DummyChannel())
    request.method = b"GET"
    request.clientproto = b"HTTP/1.1"
    # The front replaces the headers with its upstream's wholesale.
    request.responseHeaders = Headers({b"x-worker": [b"async/1/99"]})
    request.write(b"hello")
    written = request.channel.transport.written.getvalue()
    assert b"X-Worker: async/1/99\r\n" in written
    assert b"X-Worker: front/2/1234\r\n" in written
    request.write(b"more")
    assert request.channel.transport.written.getvalue().count(b"front/2/1234") == 1


def test_aWorkersLogLinesSayWhichWorker():
    seen = []
    WorkerLogObserver(seen.append, 4)({"log_format": "hi"})
    assert seen == [{"log_format": "hi", "worker": 4}]


def test_aWorkerNoticesItsParentIsGone():
    """
    Its stdin is a pipe from the parent: end of file (the parent died) stops
    it; the reactor's own stop (which also calls C{connectionLost}) and an
    open pipe do not.
    """
    from twisted.internet.fdesc import setNonBlocking

    from webstack.runtime.workers import _ParentWatch

    readEnd, writeEnd = os.pipe()
    setNonBlocking(readEnd)
    lost = []
    watch = _ParentWatch(None, lambda: lost.append(True), fd=readEnd)
    try:
        assert watch.doRead() is None
        watch.connectionLost(None)
        assert lost == []
        os.close(writeEnd)
        watch.connectionLost(None)
        assert lost == [True]
        assert watch.doRead() is not None
        assert lost == [True]
    finally:
        os.close(readEnd)


def writeWorkerCounter(directory, pid, value):
    """
    What a worker's C{http_requests_total} leaves in the multiprocess files.
    """
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    values = MmapedDict(os.path.join(directory, f"counter_{pid}.db"))
    key = mmap_key(
        "http_requests", "http_requests_total", ["route"], ["/"], "Requests."
    )
    values.write_value(key, value, 0.0)
    values.close()


def test_aWorkerExposesTheSumOfEveryWorkerAndItsOwnCollectors(tmp_path):
    """
    The multiprocess files give the sums; this process's registry adds only
    what the files lack (a custom collector), and is read first, so that a
    collector that brings figures up to date as it is read is seen.
    """
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import generate_latest

    from webstack.runtime.metrics import WorkersView

    writeWorkerCounter(tmp_path, 101, 3.0)
    registry = CollectorRegistry()
    # This process's own (not multiprocess here) copy: left out.
    Counter("http_requests", "Requests.", ["route"], registry=registry).labels("/").inc(1000)

    class Replicas:
        def collect(self):
            writeWorkerCounter(tmp_path, 102, 4.0)
            family = GaugeMetricFamily("front_replicas", "Replicas.", labels=["route"])
            family.add_metric(["async"], 2)
            return [family]

    registry.register(Replicas())
    text = generate_latest(WorkersView(registry, str(tmp_path))).decode()
    assert 'http_requests_total{route="/"} 7.0' in text
    assert "1000" not in text
    assert 'front_replicas{route="async"} 2.0' in text


# Real processes.


def frontEnv(echo, slow, **extra):
    env = {
        "WEBSTACK_FRONT_WORKERS": "2",
        "WEBSTACK_FRONT_ROUTES_CGI_UPSTREAM": f"127.0.0.1:{echo.port}",
        "WEBSTACK_FRONT_ROUTES_WSGI_UPSTREAM": f"127.0.0.1:{slow.port}",
        # One probe round, at start-up.
        "WEBSTACK_FRONT_HEALTH_INTERVAL": "3600",
    }
    env.update(extra)
    return env


def workerOf(response) -> tuple[int, int]:
    """
    The (index, pid) of the front worker that answered.
    """
    values = [v for v in response.headers.get_all("X-Worker") or [] if v.startswith("front/")]
    assert len(values) == 1, response.headers
    _, index, pid = values[0].split("/")
    return int(index), int(pid)


def get(port, path="/cgi/hello"):
    response, body = request(port, "GET", path)
    assert response.status == 200, (response.status, body)
    return response


def until(port, predicate, limit=400, path="/cgi/hello"):
    """
    Send requests, each on its own connection, until C{predicate} holds of
    the workers seen (at most C{limit}); return them in order.
    """
    seen = []
    for _ in range(limit):
        seen.append(workerOf(get(port, path)))
        if predicate(seen):
            return seen
    raise AssertionError(f"not reached in {limit} requests: {sorted(set(seen))}")


def metricValue(port, name, **labels) -> float:
    _, body = request(port, "GET", "/-/metrics")
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == want or (not labels and key == name):
            total += float(value)
    return total


def settled(port, name, **labels) -> float:
    """
    C{metricValue} once every request answered so far is counted: a client
    has its whole response a moment before the worker counts it, and the
    scrape may reach another worker in that moment.  The scrape is the one
    request in flight then.
    """
    waitFor(
        lambda: metricValue(port, "http_requests_in_flight") == 1.0,
        what="every request counted",
    )
    return metricValue(port, name, **labels)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def upstreams():
    echo = EchoUpstream("echo")
    slow = EchoUpstream("slow", delay=1.5)
    try:
        yield echo, slow
    finally:
        echo.close()
        slow.close()


@pytest.fixture(scope="module")
def stack(upstreams):
    stack = LocalStack(ephemeral=True, env=frontEnv(*upstreams), backends=()).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.integration
def test_theParentAnnouncesTheSocketAndItsWorkers(stack):
    front = stack.services["front"]
    listening = front.events("listening")
    parentLine = listening[0]
    assert "worker" not in parentLine
    assert parentLine["workers"] == 2
    assert parentLine["port"] == front.port
    assert os.path.isdir(parentLine["metrics_dir"])
    waitFor(lambda: {e["worker"] for e in front.events("listening")[1:]} == {1, 2},
            timeout=10, what="both workers adopted the socket")
    # twistd --reactor=webstack in the parent, the same in every worker.
    assert {e["reactor"] for e in front.events("listening")[1:]} == {
        "webstack.runtime.reactor.LeanEPollReactor"
    }


@pytest.mark.integration
def test_bothWorkersServe(stack):
    port = stack.services["front"].port
    seen = until(port, lambda seen: len({index for index, _ in seen}) == 2)
    assert {index for index, _ in seen} == {1, 2}


@pytest.mark.integration
def test_metricsSumEveryWorker(stack):
    port = stack.services["front"].port
    labels = dict(route="/cgi/", method="GET", status="200")
    before = settled(port, "http_requests_total", **labels)
    seen = until(port, lambda seen: len(seen) >= 20 and len({i for i, _ in seen}) == 2)
    after = settled(port, "http_requests_total", **labels)
    assert after - before == len(seen)
    exchanges = metricValue(
        port, "front_upstream_exchanges_total", route="cgi", outcome="response"
    )
    assert exchanges >= len(seen)


@pytest.mark.integration
def test_aKilledWorkerIsRestartedAndRequestsGoOn(stack):
    front = stack.services["front"]
    port = front.port
    labels = dict(route="/cgi/", method="GET", status="200")
    index, pid = workerOf(get(port))
    before = settled(port, "http_requests_total", **labels)
    os.kill(pid, signal.SIGKILL)
    # Every request keeps succeeding, on the other worker, then on both.
    seen = until(
        port,
        lambda seen: any(i == index and p != pid for i, p in seen),
        limit=2000,
    )
    assert all(p != pid for _, p in seen)
    died = [e for e in front.events("worker_died") if e["pid"] == pid]
    assert died and died[0]["worker"] == index and died[0]["signal"] == 9
    started = [e for e in front.events("worker_started") if e["worker"] == index]
    assert started[-1]["pid"] != pid
    # The dead worker's requests still count in the sum.
    after = settled(port, "http_requests_total", **labels)
    assert after - before == len(seen)


@pytest.mark.integration
def test_sigtermDrainsEveryWorkerAndExitsZero(upstreams):
    """
    A request in flight (1.5 s upstream) completes after the parent got
    SIGTERM, twice; the parent closes the socket, its workers drain, it
    exits 0 and removes the metrics directory.
    """
    echo, slow = upstreams
    stack = LocalStack(ephemeral=True, env=frontEnv(echo, slow), backends=()).start()
    try:
        front = stack.services["front"]
        port = front.port
        metricsDir = front.events("listening")[0]["metrics_dir"]
        pids = {p for _, p in until(port, lambda seen: len({i for i, _ in seen}) == 2)}
        seen = len(slow.seen)
        client = rawSend(
            port, b"GET /wsgi/slow HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n"
        )
        waitFor(lambda: len(slow.seen) > seen, what="the slow request reached upstream")
        front.process.send_signal(signal.SIGTERM)
        waitFor(lambda: front.events("draining"), what="the parent began stopping")
        front.process.send_signal(signal.SIGTERM)
        answer = readAll(client)
        client.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b'"server": "slow"' in answer
        assert front.process.wait(20) == 0
        stopped = front.events("worker_stopped")
        assert {e["pid"] for e in stopped} == pids
        assert all(e["status"] == 0 for e in stopped)
        assert not any(alive(p) for p in pids)
        assert not os.path.exists(metricsDir)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        stack.stop()


@pytest.mark.integration
def test_workersStopWhenTheParentIsKilled(upstreams):
    """
    SIGKILL leaves the parent no time to stop anything: its workers notice
    (their stdin closes) and stop by themselves.
    """
    stack = LocalStack(ephemeral=True, env=frontEnv(*upstreams), backends=()).start()
    try:
        front = stack.services["front"]
        metricsDir = front.events("listening")[0]["metrics_dir"]
        pids = {p for _, p in until(front.port, lambda seen: len({i for i, _ in seen}) == 2)}
        front.process.kill()
        front.process.wait(5)
        waitFor(lambda: not any(alive(p) for p in pids), timeout=15, what="workers gone")
        assert len(front.events("parent_gone")) == 2
    finally:
        stack.stop()
        import shutil

        shutil.rmtree(metricsDir, ignore_errors=True)


def runFront(env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess:
    environ = dict(os.environ)
    environ["WEBSTACK_CONFIG"] = str(ROOT / "config" / "stack.toml")
    environ["PYTHONPATH"] = str(ROOT / "services" / "src")
    environ.update(env)
    return subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "webstack-front"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.integration
@pytest.mark.parametrize("value", ["-1", "many", "1000"])
def test_aBadWorkersValueStopsTheFrontWithOneLine(value):
    result = runFront({"WEBSTACK_FRONT_WORKERS": value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "WEBSTACK_FRONT_WORKERS" in lines[0] and repr(value) in lines[0]


@pytest.mark.integration
def test_workersNeedATCPListenDescription(tmp_path):
    result = runFront(
        {
            "WEBSTACK_FRONT_WORKERS": "2",
            "WEBSTACK_FRONT_LISTEN": f"unix:{tmp_path / 'front.sock'}",
        }
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "front.workers = 2 needs a tcp listen description" in lines[0]
