"""
C{make trace ID=...} (L{webstack.trace}): one request's log lines from every
service, in time order.  The lines as compose v1 and v2 and C{make run}
print them, in memory; then a real stack of processes (C{python -m
webstack.localstack}, what C{make run} runs, its output saved to a file) and
one request through the front, traced by the Makefile's own target.  The same
on the real containers is in test_monitoring.py, which has the stack.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webstack import trace

from .support import request

ROOT = Path(__file__).resolve().parents[2]


def record(when: str, **fields) -> str:
    return json.dumps({"time": when, "level": "info", "ns": "webstack.access", "msg": "m", **fields})


FRONT = record(
    "2026-11-22T10:00:00.300000+00:00",
    msg="GET /auth/ 200 12.0ms", event="access", method="GET", path="/auth/",
    status=200, outcome="ok", route="/auth/", request_id="req-1", worker=1,
)
BACKEND = record(
    "2026-11-22T10:00:00.290000+00:00",
    msg="GET /auth/ 200 9.5ms", event="access", method="GET", path="/auth/",
    status=200, outcome="ok", route="/auth/", request_id="req-1",
)


def test_readsComposeV1V2AndMakeRunLines():
    v1 = trace.parseLine(f"webstack_auth_1   | {BACKEND}\n", 0)
    v2 = trace.parseLine(f"webstack-auth-1  | {BACKEND}\n", 1)
    local = trace.parseLine(f"   auth | {BACKEND}\n", 2)
    bare = trace.parseLine(BACKEND, 3)
    colored = trace.parseLine(f"\x1b[36mwebstack_auth_1  |\x1b[0m {BACKEND}", 4)
    assert [v1.source, v2.source, local.source, bare.source] == [
        "webstack_auth_1", "webstack-auth-1", "auth", "-"
    ]
    assert colored is not None and colored.source == "webstack_auth_1"
    assert v1.record["request_id"] == "req-1"
    assert v1.when == pytest.approx(1795341600.29)


@pytest.mark.parametrize(
    "text",
    [
        "webstack_auth_1  | Traceback (most recent call last):",
        "Attaching to webstack_front_1, webstack_auth_1",
        "front | {not json}",
        'front | {"level": "info", "request_id": "req-1"}',
        'front | {"time": "yesterday", "request_id": "req-1"}',
        "front | [1, 2]",
        "",
    ],
)
def test_passesOverWhatIsNotALogRecord(text):
    assert trace.parseLine(text, 0) is None


def test_keepsOnlyTheIdsLinesInTimeOrder():
    """
    The front finishes after its backend, so its line is read first (its
    container's log comes first) but belongs second; a line of another
    request whose id starts with this one's, or names it elsewhere, is not
    this request's.
    """
    other = record("2026-11-22T10:00:00.295000+00:00", request_id="req-10")
    mention = record("2026-11-22T10:00:00.296000+00:00", request_id="x", path="/req-1")
    lines = trace.matching(
        [f"webstack_front_1  | {FRONT}", f"webstack_front_1  | {other}",
         f"webstack_auth_1   | {mention}", f"webstack_auth_1   | {BACKEND}"],
        "req-1",
    )
    assert [line.source for line in lines] == ["webstack_auth_1", "webstack_front_1"]
    assert [line.record["time"] for line in lines] == sorted(line.record["time"] for line in lines)


def test_linesOfOneInstantKeepTheOrderTheyWereRead():
    first = record("2026-11-22T10:00:00.100000+00:00", request_id="r", msg="first")
    second = record("2026-11-22T10:00:00.100000+00:00", request_id="r", msg="second")
    earlier = record("2026-11-22T09:59:59.000000+00:00", request_id="r", msg="earlier")
    lines = trace.matching([f"a | {first}", f"b | {second}", f"c | {earlier}"], "r")
    assert [line.record["msg"] for line in lines] == ["earlier", "first", "second"]


def test_offsetsOtherThanUTCAreOrderedByTheInstant():
    paris = record("2026-11-22T11:00:00.000000+01:00", request_id="r", msg="paris")
    utc = record("2026-11-22T10:00:00.500000+00:00", request_id="r", msg="utc")
    assert [line.record["msg"] for line in trace.matching([paris, utc], "r")] == ["paris", "utc"]


def test_aLineShowsTimeSourceMessageAndTheRestOfItsFields():
    [line] = trace.matching([f"webstack_front_1  | {FRONT}"], "req-1")
    text = trace.formatLine(line)
    assert text.startswith("2026-11-22T10:00:00.300000+00:00  webstack_front_1  info   GET /auth/ 200 12.0ms")
    assert "outcome=ok" in text and "route=/auth/" in text and "worker=1" in text
    assert "request_id" not in text and "duration_ms" not in text
    [backend] = trace.matching([record("2026-11-22T10:00:00+00:00", request_id="r", forwarded_for=None)], "r")
    assert "forwarded_for" not in trace.formatLine(backend)
    assert json.loads(trace.formatJSON(line)) == {**json.loads(FRONT), "source": "webstack_front_1"}


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "id;rm -rf /", "é", "a\nb"])
def test_aBadIdIsRefusedWithWhatAnIdIs(bad, tmp_path):
    err = io.StringIO()
    logs = tmp_path / "run.log"
    logs.write_text("")
    status = trace.main(["--logs", str(logs)], environ={trace.ID_ENV: bad}, out=io.StringIO(), err=err)
    assert status == 2
    assert "is not a request id: 1 to 64 of A-Z a-z 0-9 . _ : -" in err.getvalue()


def test_theIdComesFromTheArgumentOrTheEnvironment(tmp_path):
    logs = tmp_path / "run.log"
    logs.write_text(f"  front | {FRONT}\n   auth | {BACKEND}\n")
    out, err = io.StringIO(), io.StringIO()
    assert trace.main(["req-1", "--logs", str(logs)], environ={}, out=out, err=err) == 0
    fromEnv = io.StringIO()
    assert trace.main(["--logs", str(logs)], environ={trace.ID_ENV: "req-1"}, out=fromEnv, err=io.StringIO()) == 0
    assert out.getvalue() == fromEnv.getvalue()
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["auth", "front"]
    assert "2 line(s) from auth, front; 10.0 ms from the first to the last" in err.getvalue()


def test_noLineForTheIdIsExitStatus1(tmp_path):
    logs = tmp_path / "run.log"
    logs.write_text(f"  front | {FRONT}\n")
    err = io.StringIO()
    assert trace.main(["nobody", "--logs", str(logs)], environ={}, out=io.StringIO(), err=err) == 1
    assert "no log line has request_id nobody" in err.getvalue()


def test_unreadableLogsAndAFailingComposeAreExitStatus2(tmp_path):
    err = io.StringIO()
    assert trace.main(["r", "--logs", str(tmp_path / "missing.log")], environ={}, out=io.StringIO(), err=err) == 2
    assert "cannot read" in err.getvalue() and "missing.log" in err.getvalue()
    err = io.StringIO()
    command = f"{sys.executable} -c 'import sys; sys.stderr.write(\"no such project\\n\"); sys.exit(3)'"
    assert trace.main(["r", "--compose", command], environ={}, out=io.StringIO(), err=err) == 2
    assert "failed (exit 3): no such project" in err.getvalue()
    err = io.StringIO()
    assert trace.main(["r", "--compose", "/nonexistent/compose"], environ={}, out=io.StringIO(), err=err) == 2
    assert "cannot run /nonexistent/compose logs --no-color" in err.getvalue()


def test_readsWhatTheComposeCommandPrints(tmp_path):
    """
    C{--compose COMMAND} runs C{COMMAND logs --no-color}: here a stand-in
    that prints what compose v1 would.
    """
    fake = tmp_path / "compose"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "assert sys.argv[1:] == ['logs', '--no-color'], sys.argv\n"
        f"print('webstack_front_1  | ' + {FRONT!r})\n"
        "print('webstack_front_1  | not json')\n"
        f"print('webstack_auth_1   | ' + {BACKEND!r})\n"
    )
    fake.chmod(0o755)
    out = io.StringIO()
    assert trace.main(["req-1", "--compose", str(fake), "--json"], environ={}, out=out, err=io.StringIO()) == 0
    assert [json.loads(line)["source"] for line in out.getvalue().splitlines()] == [
        "webstack_auth_1", "webstack_front_1"
    ]


def make(*args, env=None, timeout=120):
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, env=env or os.environ,
        capture_output=True, text=True, timeout=timeout,
    )


def test_makeTraceWithoutAnIdSaysHowToCallIt():
    result = make("trace", "LOGS=/dev/null")
    assert result.returncode == 2
    assert "usage: make trace ID=<request id> [LOGS=file]" in result.stdout


def test_makeTraceNeverGivesTheIdToAShell(tmp_path):
    marker = tmp_path / "marker"
    result = make("trace", f"ID=x$$(touch {marker})", "LOGS=/dev/null")
    assert result.returncode == 2 and "is not a request id" in result.stderr
    assert not marker.exists()


@pytest.mark.integration
def test_makeTraceFollowsARequestThroughMakeRunsOutput(tmp_path):
    """
    The stack as C{make run} runs it (C{python -m webstack.localstack}, on
    free ports), its output saved; one request to C{/auth/} through the
    front with a chosen C{X-Request-Id}; C{make trace ID=... LOGS=...} prints
    the auth service's line and then the front's, in time order.
    """
    log = tmp_path / "run.log"
    with open(log, "w") as output:
        stack = subprocess.Popen(
            [sys.executable, "-m", "webstack.localstack", "--ephemeral"],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "services" / "src")},
        )
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline and stack.poll() is None:
            found = re.search(r"webstack is up: http://127\.0\.0\.1:(\d+)/", log.read_text())
            port = int(found.group(1)) if found else None
            time.sleep(0.2)
        assert port, f"the stack did not start:\n{log.read_text()[-3000:]}"
        basic = base64.b64encode(b"alice:wonderland-2026").decode()
        response, body = request(
            port, "GET", "/auth/",
            headers={"Authorization": f"Basic {basic}", "X-Request-Id": "trace-me-0001"},
        )
        assert response.status == 200 and response.headers["X-Request-Id"] == "trace-me-0001"
        request(port, "GET", "/auth/", headers={"X-Request-Id": "someone-else"})
    finally:
        # Stopped (it drains) before reading, so every line is written.
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=60) == 0

    result = make("trace", "ID=trace-me-0001", f"LOGS={log}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["auth", "front"], result.stdout
    assert all("GET /auth/ 200" in line for line in lines)
    times = [line.split()[0] for line in lines]
    assert times == sorted(times)
    assert "2 line(s) from auth, front" in result.stderr
