"""
The CGI service over loopback, through the front, on a script directory
made for the test (the demo scripts, plus what must never run): the seed's
two script kinds, an environment without secrets, a script stopped when its
client leaves or its time is up, and no process or zombie left behind
(looked up in /proc).
"""

import os
import shutil
from pathlib import Path

import pytest

from webstack.localstack import LocalStack

from .support import onePiece, rawGet, rawSend, request, waitFor

pytestmark = pytest.mark.integration

BIN = Path(__file__).resolve().parents[2] / "config" / "cgi-bin"
SECRET = "s3cr3t-in-the-service-environment"


@pytest.fixture(scope="module")
def cgi(tmp_path_factory):
    base = tmp_path_factory.mktemp("cgi")
    root = base / "cgi-bin"
    root.mkdir()
    for name in ("date-example.sh", "date-filtered.sh", "echo.py", "hang.sh"):
        shutil.copy2(BIN / name, root / name)
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


def test_theSeedsCGIScript(cgi):
    response, body = request(front(cgi), "GET", "/cgi/date-example.sh")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert b"20" in body  # a year


def test_theSeedsFilteredScript(cgi):
    response, body = request(front(cgi), "GET", "/cgi/date-filtered.sh")
    assert response.status == 200
    assert body.startswith(b"run by a FilteredScript\n")


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


@pytest.mark.parametrize(
    "path",
    ["/cgi/notes.txt", "/cgi/out.sh", "/cgi/.hidden.sh", "/cgi/sub", "/cgi/nope.sh", "/cgi/%2e%2e/outside.sh"],
)
def test_onlyRunnableScriptsInTheDirectoryRun(cgi, path):
    response, body = request(front(cgi), "GET", path)
    assert response.status in (400, 404)
    assert b"ESCAPED" not in body and b"not a script" not in body


def test_aScriptPastItsTimeIsStoppedAndTheClientGets504(cgi):
    response, body = request(front(cgi), "GET", "/cgi/hang.sh?291")
    assert response.status == 504
    assert b"did not answer within 1.5 s" in body
    waitFor(lambda: sleeping(291) == [], timeout=5, what="the script's child stopped")
    assert zombiesOf(cgi.services["cgi"].process.pid) == []


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


@pytest.mark.parametrize("path", [b"/cgi/nope.sh", b"/cgi/notes.txt", b"/cgi/"])
def test_answersWrittenInOnePieceGoWithTheirLength(cgi, path):
    """
    The index and the 404s; a script's own output is streamed as it comes.
    """
    onePiece(rawGet(cgi.services["cgi"].port, path))
