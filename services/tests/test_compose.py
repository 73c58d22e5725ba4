"""
The real containers: `make up` from nothing, every demo through the published
front, a backend killed and brought back, a service scaled to three, a client
abort through the containerized front, and `make down` leaving nothing.

They run as their own compose project on their own port, so a stack a
developer has up is never touched.  They need a Docker engine and compose;
a machine without one skips them (CI has one, and runs them).
"""

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .support import getJSON, rawSend, request, waitFor

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "webstack-test"
PORT = 18080

pytestmark = pytest.mark.compose


def engineAnswers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


if not engineAnswers():
    pytest.skip("no Docker engine answers on this machine", allow_module_level=True)


ENV = {
    **os.environ,
    "COMPOSE_PROJECT_NAME": PROJECT,
    "WEBSTACK_PUBLISH": f"127.0.0.1:{PORT}",
}


def make(*targets, timeout=900):
    result = subprocess.run(
        ["make", *targets], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"make {' '.join(targets)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def docker(*args) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def containers(service=None, all=False) -> list[str]:
    filters = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
    if service:
        filters += ["--filter", f"label=com.docker.compose.service={service}"]
    return docker("ps", *(["-a"] if all else []), "-q", *filters).split()


@pytest.fixture(scope="module")
def stack():
    make("down")
    assert containers(all=True) == []
    make("up")
    yield PORT
    make("down")


def test_upStartsEveryServiceHealthyBehindTheFront(stack):
    states = docker(
        "ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
        "--format", "{{.Label \"com.docker.compose.service\"}} {{.Status}}",
    ).splitlines()
    assert sorted(s.split()[0] for s in states) == [
        "async", "auth", "cgi", "front", "session", "static", "wsgi"
    ]
    assert all("(healthy)" in s for s in states)
    demos = {d["route"]: d for d in getJSON(stack, "/")["demos"]}
    assert {name for name, d in demos.items() if d["state"] == "ok"} == {
        "async", "static", "rpy", "wsgi", "cgi", "auth", "session"
    }
    response, _ = request(stack, "GET", "/-/readyz")
    assert response.status == 200


def test_everyDemoAnswersThroughThePublishedFront(stack):
    response, body = request(stack, "GET", "/async/delay?seconds=0")
    assert response.status == 200 and b"Sorry to keep you waiting." in body
    response, body = request(stack, "GET", "/static/")
    assert response.status == 200 and b"Static files" in body
    response, body = request(stack, "GET", "/wsgi/hello")
    assert body == b"Hello, world!"
    response, body = request(stack, "GET", "/cgi/date-example.sh")
    assert response.status == 200 and response.headers["Content-Type"] == "text/plain"
    response, body = request(stack, "GET", "/cgi/date-filtered.sh")
    assert body.startswith(b"run by a FilteredScript")


def test_cookiesAndAuthWorkThroughTheContainers(stack):
    import base64

    from .support import digestAuthorization

    response, _ = request(stack, "GET", "/auth/")
    assert response.status == 401
    basic = base64.b64encode(b"alice:wonderland-2026").decode()
    response, body = request(stack, "GET", "/auth/", headers={"Authorization": f"Basic {basic}"})
    assert response.status == 200 and b"alice's public_html" in body
    challenge = request(stack, "GET", "/auth/")[0].headers.get_all("WWW-Authenticate")[1]
    header = digestAuthorization(challenge, "bob", "builder-2026", "GET", "/auth/")
    response, body = request(stack, "GET", "/auth/", headers={"Authorization": header})
    assert response.status == 200 and b"bob's public_html" in body

    response, body = request(stack, "GET", "/session/counter")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    jar = cookie.split(";")[0]
    response, body = request(stack, "GET", "/session/counter", headers={"Cookie": jar})
    assert body == b"Visit #2 for you!"


def test_onlyTheFrontIsPublishedAndOnLoopback(stack):
    ports = docker("ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
                   "--format", "{{.Label \"com.docker.compose.service\"}} {{.Ports}}")
    published = {line.split()[0]: line.split(" ", 1)[1] if " " in line else "" for line in ports.splitlines()}
    assert published["front"].startswith(f"127.0.0.1:{PORT}->")
    for service in ("async", "static", "wsgi", "cgi", "auth", "session"):
        assert "->" not in published[service]


def test_aClientAbortThroughTheContainerizedFrontCancelsTheBackendWork(stack):
    def interruptible():
        return getJSON(stack, "/async/stats")["endpoints"]["interruptible"]

    before = interruptible()
    s = rawSend(
        stack,
        b"GET /async/interruptible?seconds=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    waitFor(lambda: interruptible()["in_flight"] == 1, what="backend started")
    s.close()
    waitFor(
        lambda: interruptible()["cancelled"] == before["cancelled"] + 1,
        what="backend cancelled",
    )
    assert interruptible()["in_flight"] == 0


def test_aKilledBackendGives502AtOnceAndItsRouteRecovers(stack):
    """
    Under a little load, the async container is killed: its route answers
    502 at once while the front's own pages keep answering; started again,
    the route recovers without the front being restarted.
    """
    [front] = containers("front")
    frontStarted = docker("inspect", "-f", "{{.State.StartedAt}}", front).strip()
    [backend] = containers("async")

    stop = threading.Event()
    landing = []

    def load():
        for _ in range(2000):  # bounded
            if stop.is_set():
                return
            response, _ = request(stack, "GET", "/-/healthz", timeout=5)
            landing.append(response.status)
            request(stack, "GET", "/async/delay?seconds=0", timeout=10)
            time.sleep(0.01)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        docker("kill", backend)
        # The front learns it from the load (a connection not accepted) or
        # from the engine's DNS, within a second or two...
        waitFor(
            lambda: request(stack, "GET", "/async/delay?seconds=0")[0].status == 502,
            timeout=10,
            interval=0.1,
            what="the front to notice",
        )
        # ...and from then on fails fast.
        for _ in range(5):
            start = time.monotonic()
            response, _ = request(stack, "GET", "/async/delay?seconds=0", timeout=10)
            assert response.status == 502
            assert time.monotonic() - start < 0.5
        response, _ = request(stack, "GET", "/")
        assert response.status == 200
        docker("start", backend)
        waitFor(
            lambda: request(stack, "GET", "/async/delay?seconds=0")[0].status == 200,
            timeout=60,
            interval=0.5,
            what="the async route to recover",
        )
    finally:
        stop.set()
        loader.join()
    assert landing and set(landing) == {200}
    assert docker("inspect", "-f", "{{.State.StartedAt}}", front).strip() == frontStarted


def test_aScaledServiceHasEveryReplicaServing(stack):
    make("scale", "SERVICE=async", "N=3")
    try:
        assert len(containers("async")) == 3

        def servedBy():
            seen = set()
            for _ in range(30):
                response, _ = request(stack, "GET", "/async/delay?seconds=0")
                seen.add(response.headers["X-Served-By"])
            return len(seen) == 3

        waitFor(servedBy, timeout=60, interval=1, what="three replicas answering")
    finally:
        make("scale", "SERVICE=async", "N=1")


def test_locustRunsDistributedInContainers(stack):
    """
    The compose "load" profile: a locust master and two worker containers
    against the containerized front; every abort is cancelled.
    """
    before = set((ROOT / "reports").glob("*")) if (ROOT / "reports").exists() else set()
    make("load-compose", "WORKERS=2", "USERS=16", "SPAWN=16", "DURATION=6s")
    [report] = set((ROOT / "reports").glob("*")) - before
    summary = json.loads((report / "summary.json").read_text())
    assert summary["passed"] and summary["failures"] == 0
    books = summary["cancellation"]
    assert books["aborts_sent"] > 0 and books["cancellations_observed"] == books["aborts_sent"]
    assert containers("locust-master", all=True) == []


def test_downLeavesNothingBehind(stack):
    make("down")
    assert containers(all=True) == []
    networks = docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}")
    assert networks.split() == []
    volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}")
    assert volumes.split() == []
    make("up")  # the fixture's own `down` ends the module
