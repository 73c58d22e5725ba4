"""
The CGI service over loopback, through the front, on a script directory
made for the test (the demo scripts, plus what must never run): the seed's
two script kinds, an environment without secrets, a script stopped when its
client leaves or its time is up, at most cgi.max_processes scripts at once
(the rest 503 at once), and no process or zombie left behind (looked up in
/proc).  Then the same guards in memory: the slots, a refusal, a script that
cannot be spawned.
"""

import errno
import os
import shutil
import socket
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
from twisted.internet.error import ProcessDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from webstack.cgi import app as cgiApp
from webstack.cgi.scripts import Guard, GuardedCGIScript
from webstack.localstack import LocalStack
from webstack.runtime.config import ConfigError
from webstack.runtime.plugin import loadServiceSettings

from .support import dummyRequest, onePiece, rawGet, rawSend, readAll, request, waitFor

integration = pytest.mark.integration

BIN = Path(__file__).resolve().parents[2] / "config" / "cgi-bin"
SECRET = "s3cr3t-in-the-service-environment"


def scriptDirectory(base: Path) -> Path:
    root = base / "cgi-bin"
    root.mkdir()
    for name in ("date-example.sh", "date-filtered.sh", "echo.py", "hang.sh"):
        shutil.copy2(BIN / name, root / name)
    return root


@pytest.fixture(scope="module")
def cgi(tmp_path_factory):
    base = tmp_path_factory.mktemp("cgi")
    root = scriptDirectory(base)
    outside = base / "outside.sh"
    outside.write_text("#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho ESCAPED\n")
    outside.chmod(0o755)
    os.symlink(outside, root / "out.sh")
    (root / "notes.txt").write_text("not a script\n")
    hidden = root / ".hidden.sh"
    hidden.write_text(outside.read_text())
    hidden.chmod(0o755)
    (root / "sub").mkdir()
    env = {
        "WEBSTACK_CGI_ROOT": str(root),
        "WEBSTACK_CGI_TIMEOUT": "1.5",
        "WEBSTACK_CGI_KILL_GRACE": "0.5",
        "WEBSTACK_TEST_SECRET": SECRET,
        "HTTP_PROXY": "http://proxy.invalid:3128",
    }
    with LocalStack(ephemeral=True, env=env, backends=("cgi",)) as stack:
        yield stack


def front(stack):
    return stack.services["front"].port


def processes():
    """
    (pid, ppid, state, argv) of every process this user can see.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found.append((int(entry), int(fields[1]), fields[0], argv))
    return found


def sleeping(seconds: int):
    marker = [b"sleep", str(seconds).encode()]
    return [p for p in processes() if p[3][:2] == marker]


def zombiesOf(pid):
    return [p for p in processes() if p[1] == pid and p[2] == "Z"]


@integration
def test_theSeedsCGIScript(cgi):
    response, body = request(front(cgi), "GET", "/cgi/date-example.sh")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert b"20" in body  # a year


@integration
def test_theSeedsFilteredScript(cgi):
    response, body = request(front(cgi), "GET", "/cgi/date-filtered.sh")
    assert response.status == 200
    assert body.startswith(b"run by a FilteredScript\n")


@integration
def test_aPythonCGIEchoesQueryAndFormEscaped(cgi):
    response, body = request(
        front(cgi),
        "POST",
        "/cgi/echo.py?q=%3Cb%3E",
        body="name=%3Cscript%3E",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert b"q = &lt;b&gt;" in body
    assert b"name = &lt;script&gt;" in body
    assert b"<script>" not in body


@integration
def test_aScriptSeesTheCGIVariablesAndNothingOfTheServers(cgi):
    response, body = request(
        front(cgi), "GET", "/cgi/echo.py", headers={"Proxy": "http://evil.invalid"}
    )
    names = set(body.decode().split("<h2>environment names</h2>")[1].replace("</li>", "").split("<li>")[1:])
    names = {n.split("<")[0] for n in names}
    assert {"REQUEST_METHOD", "SCRIPT_NAME", "QUERY_STRING", "HTTP_HOST", "PATH"} <= names
    assert "WEBSTACK_TEST_SECRET" not in names and SECRET.encode() not in body
    assert "HTTP_PROXY" not in names
    assert not any(n.startswith("WEBSTACK_") for n in names)


@integration
@pytest.mark.parametrize(
    "path",
    ["/cgi/notes.txt", "/cgi/out.sh", "/cgi/.hidden.sh", "/cgi/sub", "/cgi/nope.sh", "/cgi/%2e%2e/outside.sh"],
)
def test_onlyRunnableScriptsInTheDirectoryRun(cgi, path):
    response, body = request(front(cgi), "GET", path)
    assert response.status in (400, 404)
    assert b"ESCAPED" not in body and b"not a script" not in body


@integration
def test_aScriptPastItsTimeIsStoppedAndTheClientGets504(cgi):
    response, body = request(front(cgi), "GET", "/cgi/hang.sh?291")
    assert response.status == 504
    assert b"did not answer within 1.5 s" in body
    waitFor(lambda: sleeping(291) == [], timeout=5, what="the script's child stopped")
    assert zombiesOf(cgi.services["cgi"].process.pid) == []


@integration
def test_aClientThatLeavesStopsTheScriptAndItsChildren(cgi):
    """
    Stock twcgi lets the script run on; here the whole process group goes,
    and nothing is left as a zombie.
    """
    s = rawSend(front(cgi), b"GET /cgi/hang.sh?293 HTTP/1.1\r\nHost: x\r\n\r\n")
    [(pid, ppid, state, argv)] = waitFor(lambda: sleeping(293), what="the script started")
    s.close()
    waitFor(lambda: sleeping(293) == [], timeout=1.0, what="the script stopped at once")
    service = cgi.services["cgi"]
    assert zombiesOf(service.process.pid) == []
    [event] = waitFor(
        lambda: [e for e in service.events("cgi_stopped") if e["reason"] == "client_gone"],
        what="the stop logged",
    )
    assert event["script"] == "hang.sh"


@integration
@pytest.mark.parametrize("path", [b"/cgi/nope.sh", b"/cgi/notes.txt", b"/cgi/"])
def test_answersWrittenInOnePieceGoWithTheirLength(cgi, path):
    """
    The index and the 404s; a script's own output is streamed as it comes.
    """
    onePiece(rawGet(cgi.services["cgi"].port, path))


# Issue 9, attack 7: a crowd asking for a slow script at once.  Stock twcgi
# (and this service before cgi.max_processes) starts one process per request,
# however many come.

CAP = 4
CROWD = 12


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    root = scriptDirectory(tmp_path_factory.mktemp("crowded"))
    env = {
        "WEBSTACK_CGI_ROOT": str(root),
        "WEBSTACK_CGI_MAX_PROCESSES": str(CAP),
        "WEBSTACK_CGI_TIMEOUT": "4",
        "WEBSTACK_CGI_KILL_GRACE": "0.5",
    }
    with LocalStack(ephemeral=True, env=env, backends=("cgi",)) as stack:
        yield stack


def metric(stack, service, line):
    """
    The value of the sample C{line} names (C{name{labels}}) at C{/metrics}.
    """
    _, body = request(stack.services[service].port, "GET", "/metrics")
    for text in body.decode().splitlines():
        if text.startswith(line + " "):
            return float(text.rsplit(" ", 1)[1])
    raise AssertionError(f"{line} not in {service}'s /metrics")


def childrenOf(pid):
    return [p for p in processes() if p[1] == pid]


def fetchTimed(port, path: bytes, results: list, start: threading.Barrier) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        start.wait(10)
        sent = time.monotonic()
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = readAll(s, timeout=15)
        results.append((time.monotonic() - sent, answer))
    finally:
        s.close()


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@integration
def test_atMostMaxProcessesScriptsRunTheRestAre503AtOnce(crowded):
    """
    Twelve clients ask for a script that never answers, through the front,
    with cgi.max_processes = 4: four scripts run (the service's gauge, its
    children in /proc, their sleeps), the other eight are answered 503 with
    Retry-After within a second, not held; the four are stopped at
    cgi.timeout (504), everything is reaped, and the slots are free again.
    """
    service = crowded.services["cgi"]
    results: list = []
    start = threading.Barrier(CROWD)
    clients = [
        threading.Thread(
            target=fetchTimed,
            args=(front(crowded), b"/cgi/hang.sh?297", results, start),
            daemon=True,
        )
        for _ in range(CROWD)
    ]
    for client in clients:
        client.start()
    refused = waitFor(
        lambda: len(results) >= CROWD - CAP and [r for r in results if status(r[1]) == 503],
        timeout=3,
        what=f"{CROWD - CAP} answers",
    )
    assert len(refused) == CROWD - CAP, [r[1][:40] for r in results]
    for seconds, answer in refused:
        assert seconds < 1.0
        assert b"\r\nretry-after: 1\r\n" in answer.lower()
        assert b"script slots are taken" in answer
    # The four still held: running, and nothing more.
    sleeps = waitFor(lambda: len(sleeping(297)) == CAP and sleeping(297), what="four scripts")
    assert len(childrenOf(service.process.pid)) == CAP
    assert metric(crowded, "cgi", "cgi_scripts_running") == CAP
    assert metric(crowded, "cgi", "cgi_max_processes") == CAP
    assert metric(crowded, "cgi", 'cgi_rejected_total{reason="busy"}') == CROWD - CAP
    assert len(results) == CROWD - CAP

    for client in clients:
        client.join(15)
    assert sorted(status(r[1]) for r in results) == [503] * (CROWD - CAP) + [504] * CAP
    waitFor(lambda: childrenOf(service.process.pid) == [], what="every script reaped")
    waitFor(lambda: sleeping(297) == [], what="their children stopped")

    def reaped(pid):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state != "Z"

    waitFor(lambda: all(reaped(p[0]) for p in sleeps), what="their children reaped")
    assert metric(crowded, "cgi", "cgi_scripts_running") == 0
    response, body = request(front(crowded), "GET", "/cgi/date-example.sh")
    assert response.status == 200
    for name in ("cgi", "front"):
        bad = [
            e for e in crowded.services[name].events()
            if "traceback" in e or e.get("level") in ("error", "critical")
        ]
        assert bad == []


# The same, in memory.


class SpawningReactor(Clock):
    """
    A clock that records the processes it is asked to spawn, or refuses them
    with C{refusal} (an L{OSError}) as fork does when no process is left.
    """

    def __init__(self, refusal: OSError | None = None) -> None:
        super().__init__()
        self.spawned = []
        self.refusal = refusal

    def spawnProcess(self, protocol, executable, args, env, path):
        if self.refusal is not None:
            raise self.refusal
        self.spawned.append(protocol)


def guardOn(reactor, capacity=2):
    from webstack.cgi.slots import ScriptSlots  # here: the old code has none

    counts = {"refused": [], "runs": []}
    guard = Guard(
        reactor=reactor,
        timeout=10.0,
        killGrace=1.0,
        passEnv=(),
        count=lambda script, outcome: counts["runs"].append(outcome),
        slots=ScriptSlots(capacity),
        retryAfter=3,
        refused=counts["refused"].append,
    )
    return guard, counts


def run(guard, tmp_path):
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n")
    request = dummyRequest(DummyRequest, "192.0.2.7")
    request.prepath, request.postpath = [b"cgi", b"s.sh"], []
    request.uri = b"/cgi/s.sh"
    request.content = BytesIO()
    GuardedCGIScript(str(script), guard).render(request)
    return request


def test_slotsAreBoundedAndGivenBack():
    from webstack.cgi.slots import ScriptSlots

    changes = []
    slots = ScriptSlots(2, changes.append)
    assert [slots.acquire(), slots.acquire(), slots.acquire()] == [True, True, False]
    assert slots.running == 2
    slots.release()
    assert slots.acquire() and slots.running == 2
    assert changes == [1, 1, -1, 1]
    with pytest.raises(ValueError):
        ScriptSlots(0)
    with pytest.raises(RuntimeError):
        ScriptSlots(1).release()


def test_aRequestBeyondTheSlotsIs503WithRetryAfterAndSpawnsNothing(tmp_path):
    reactor = SpawningReactor()
    guard, counts = guardOn(reactor, capacity=2)
    first, second = run(guard, tmp_path), run(guard, tmp_path)
    third = run(guard, tmp_path)
    assert len(reactor.spawned) == 2
    assert third.finished and third.responseCode == 503
    assert third.responseHeaders.getRawHeaders(b"retry-after") == [b"3"]
    assert counts["refused"] == ["busy"]
    assert not first.finished and not second.finished

    # One ends: its slot is free for the next request.
    protocol = reactor.spawned[0]
    protocol.outReceived(b"Content-Type: text/plain\n\nok")
    protocol.processEnded(Failure(ProcessDone(0)))
    assert first.finished and counts["runs"] == ["ok"]
    assert guard.slots.running == 1
    run(guard, tmp_path)
    assert len(reactor.spawned) == 3 and counts["refused"] == ["busy"]


def test_aScriptThatCannotBeSpawnedIs503AndKeepsNoSlotOrTimer(tmp_path):
    reactor = SpawningReactor(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
    guard, counts = guardOn(reactor, capacity=1)
    request = run(guard, tmp_path)
    assert request.finished and request.responseCode == 503
    assert request.responseHeaders.getRawHeaders(b"retry-after") == [b"3"]
    assert counts["refused"] == ["spawn_failed"]
    assert guard.slots.running == 0
    assert reactor.getDelayedCalls() == []


@pytest.mark.parametrize(
    "environ, message",
    [
        (
            {"WEBSTACK_CGI_MAX_PROCESSES": "0"},
            "WEBSTACK_CGI_MAX_PROCESSES = '0' is invalid: out of range, allowed 1 to 4096",
        ),
        (
            {"WEBSTACK_CGI_MAX_PROCESSES": "many"},
            "WEBSTACK_CGI_MAX_PROCESSES = 'many' is invalid",
        ),
        (
            {"WEBSTACK_CGI_RETRY_AFTER": "-1"},
            "WEBSTACK_CGI_RETRY_AFTER = '-1' is invalid: out of range, allowed 0 to 3600",
        ),
    ],
)
def test_badLimitsAreNamed(environ, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        loadServiceSettings(cgiApp, {}, environ, "stack.toml")


def test_theDefaultsBoundTheScripts():
    _, settings = loadServiceSettings(cgiApp, {}, {}, "stack.toml")
    assert (settings.max_processes, settings.retry_after) == (32, 1)
