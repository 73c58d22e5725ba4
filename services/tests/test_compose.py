"""
The real containers: `make up` from nothing, every demo through the published
front, a backend killed and brought back, a service scaled to three, a client
abort through the containerized front, and `make down` leaving nothing.  And
what bounds them (issue 9): every container's pids, memory and CPU limits,
an image without the user files, and each container seeing only its own
part of config/.

They run as their own compose project on their own port, so a stack a
developer has up is never touched.  They need a Docker engine and compose;
a machine without one skips them (CI has one, and runs them).
"""

import http.client
import json
import math
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .support import (
    checkAbortCancelsTheBackendWork,
    checkAuthAndSessions,
    checkEveryDemoAnswers,
    getJSON,
    request,
    waitFor,
)

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
    # Prometheus with the stack is test_monitoring's business.
    "MONITORING": "0",
    # Locust's UI, off a developer's own 8089.
    "WEBSTACK_LOCUST_PUBLISH": "127.0.0.1:18089",
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


def composeCommand() -> list[str]:
    """
    The compose the Makefile would use: v2's plugin, else v1's program.
    """
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"]


def composeLimits(environ=None) -> dict[str, dict[str, str]]:
    """
    Of every service in `compose config` (the profiles' too), its
    pids_limit, mem_limit and cpus as compose resolved them.  The output is
    compose's own normalised YAML: a service's name indented by two spaces
    under "services:", its keys by four.
    """
    text = subprocess.run(
        [*composeCommand(), "--profile", "load", "config"],
        cwd=ROOT, env=environ or ENV, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    services: dict[str, dict[str, str]] = {}
    inServices = False
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            inServices = line == "services:"
            continue
        if not inServices:
            continue
        if line.startswith("  ") and not line.startswith("   ") and line.endswith(":"):
            current = services[line.strip()[:-1]] = {}
        elif current is not None and line.startswith("    ") and not line.startswith("     "):
            key, _, value = line.strip().partition(":")
            if key in ("pids_limit", "mem_limit", "cpus"):
                current[key] = value.strip().strip("'\"")
    return services


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


SERVICES = ("async", "auth", "cgi", "front", "session", "static", "wsgi")

OWN_CONFIG = {
    "front": {"stack.toml", "front"},
    "async": {"stack.toml"},
    "static": {"stack.toml", "static", "rpy"},
    "wsgi": {"stack.toml"},
    "cgi": {"stack.toml", "cgi-bin"},
    "auth": {"stack.toml", "auth"},
    "session": {"stack.toml"},
}
"""
What each service's container finds in /app/config: stack.toml and the
directories its settings name (front.route_key_file, static.root and
static.rpy_root, cgi.root, auth's homes, htpasswd, htdigest and
digest_key_file), nothing else.
"""

USER_FILES = ("htpasswd", "htdigest", "digest.key", "route.key")


def test_everyContainerHasPidsMemoryAndCPULimits():
    """
    Issue 9, attack 7: a container without limits lets one service's
    processes, threads or memory take the host's.  Read from the resolved
    compose file, so it needs no running stack.
    """
    limits = composeLimits()
    assert set(SERVICES) | {"locust-master", "locust-worker"} <= set(limits)
    for service, found in limits.items():
        assert set(found) == {"pids_limit", "mem_limit", "cpus"}, (service, found)
        assert 0 < int(found["pids_limit"]) <= 1024, (service, found)
        assert 0 < float(found["cpus"]) <= 2, (service, found)
    # The service's own bound comes first: its pids limit leaves room for
    # cgi.max_processes scripts of a few processes each.
    assert int(limits["cgi"]["pids_limit"]) >= 4 * 32


def test_theImageHoldsNoUserFilesAndNoConfig(stack):
    """
    Issue 9, attack 11: HA1 hashes are as good as passwords for Digest, and
    whoever can pull an image can read every layer of it.
    """
    for name in ("auth/htpasswd", "auth/htdigest", "auth/digest.key", "front/route.key"):
        # On the host, so that leaving them out of the image means something.
        assert (ROOT / "config" / name).is_file(), name
    found = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "find",
            "webstack/service:dev", "/", "-xdev", "(",
            *[arg for name in USER_FILES for arg in ("-name", name, "-o")],
            "-name", "*.key", "-o", "-path", "/app/config/*", ")", "-print",
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == []


def test_eachContainerSeesOnlyItsOwnPartOfConfigReadOnly(stack):
    """
    Issue 9, attack 11: every container used to mount all of config/, so a
    CGI script could read the password hashes and the Digest key.  Looked
    at from inside each container, as its own user (the user CGI scripts
    run as).
    """
    for service, expected in OWN_CONFIG.items():
        [container] = containers(service)
        seen = docker(
            "exec", container, "python", "-c",
            "import os; print(' '.join(sorted(os.listdir('/app/config'))))",
        ).split()
        assert set(seen) == expected, service
        mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", container))
        assert mounts and all(not m["RW"] for m in mounts), (service, mounts)
    [cgi] = containers("cgi")
    probe = docker(
        "exec", cgi, "sh", "-c",
        "cat /app/config/auth/htdigest /app/config/auth/digest.key /app/config/front/route.key"
        " 2>&1; echo exit=$?",
    )
    assert probe.strip().endswith("exit=1") and "No such file" in probe
    [auth] = containers("auth")
    assert "bob:" in docker("exec", auth, "cat", "/app/config/auth/htdigest")


def test_theEngineAppliesTheLimits(stack):
    """
    The limits reach the engine (compose v1 honours these keys, not
    deploy.resources), and the variables override memory and CPU.
    """
    limits = composeLimits()
    for service in SERVICES:
        [container] = containers(service)
        host = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", container))
        assert host["PidsLimit"] == int(limits[service]["pids_limit"]), service
        assert host["NanoCpus"] == int(float(limits[service]["cpus"]) * 1e9), service
        assert 0 < host["Memory"] == host["MemorySwap"], service
    cgi = composeLimits(dict(ENV, WEBSTACK_CGI_MEM_LIMIT="300m", WEBSTACK_CGI_CPUS="0.25"))["cgi"]
    assert float(cgi["cpus"]) == 0.25
    assert cgi["mem_limit"] in ("300m", str(300 * 2**20))


def test_theFrontRunsOneWorkerPerCPUItsCPUsAllow(stack):
    """
    workers = 0 counts the container's CPU quota (compose's cpus), not the
    host's CPUs: the front's parent says how many it started.
    """
    [container] = containers("front")
    cpus = float(composeLimits()["front"]["cpus"])
    out = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, timeout=60
    ).stdout
    listening = [
        json.loads(line) for line in out.splitlines()
        if line.startswith("{") and '"event": "listening"' in line
    ]
    # With several, a parent says how many workers it started; with one,
    # the front is that one process.
    workers = [event["workers"] for event in listening if "workers" in event] or [1]
    assert listening and workers == [min(math.ceil(cpus), os.cpu_count())]


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
    checkEveryDemoAnswers(stack)


def test_cookiesAndAuthWorkThroughTheContainers(stack):
    checkAuthAndSessions(stack)


def test_onlyTheFrontIsPublishedAndOnLoopback(stack):
    ports = docker("ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
                   "--format", "{{.Label \"com.docker.compose.service\"}} {{.Ports}}")
    published = {line.split()[0]: line.split(" ", 1)[1] if " " in line else "" for line in ports.splitlines()}
    assert published["front"].startswith(f"127.0.0.1:{PORT}->")
    for service in ("async", "static", "wsgi", "cgi", "auth", "session"):
        assert "->" not in published[service]


def test_aClientAbortThroughTheContainerizedFrontCancelsTheBackendWork(stack):
    checkAbortCancelsTheBackendWork(stack)


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
    workers = set()  # the front's workers, by their X-Worker values
    proxied = []  # (when it was sent, how long it took) of each /async/ request

    def load():
        for _ in range(2000):  # bounded
            if stop.is_set():
                return
            response, _ = request(stack, "GET", "/-/healthz", timeout=5)
            landing.append(response.status)
            workers.add(response.headers.get("X-Worker", "the only one"))
            start = time.monotonic()
            try:
                request(stack, "GET", "/async/delay?seconds=0", timeout=10)
            except (OSError, http.client.HTTPException):
                pass  # counted below by how long it took
            proxied.append((start, time.monotonic() - start))
            time.sleep(0.01)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        waitFor(lambda: workers, timeout=10, what="the first landing answer")
        killed = time.monotonic()
        docker("kill", backend)
        # Each front worker learns it on its own: from a connection refused
        # or not accepted (requests it sends there meanwhile wait at most the
        # connect timeout, 1 s in compose) or from the engine's DNS (asked
        # every second)...
        waitFor(
            lambda: request(stack, "GET", "/async/delay?seconds=0")[0].status == 502,
            timeout=10,
            interval=0.1,
            what="the front to notice",
        )

        # ...and once every worker knows, every request fails fast: five or
        # more in a row, each a 502 within 0.5 s, from every worker.
        def failsFast():
            answeredBy = set()
            for count in range(1, 21):
                start = time.monotonic()
                response, _ = request(stack, "GET", "/async/delay?seconds=0", timeout=10)
                if response.status != 502 or time.monotonic() - start >= 0.5:
                    return False
                answeredBy.add(response.headers.get("X-Worker", "the only one"))
                if count >= 5 and answeredBy >= workers:
                    return True
            return False

        waitFor(failsFast, timeout=10, interval=0.1, what="fast 502s from every worker")
        response, _ = request(stack, "GET", "/")
        assert response.status == 200
        restarted = time.monotonic()
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
    # While the backend was down, no request waited on it for longer than
    # the connect timeout (1 s), with room for a busy machine.
    down = [took for sent, took in proxied if killed <= sent < restarted]
    assert down and max(down) < 2.5
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
    # Only the run against the containerized front: a local `make load`
    # may write reports/ at the same time.
    [summary] = [
        summary
        for report in set((ROOT / "reports").glob("*")) - before
        if (report / "summary.json").exists()
        for summary in [json.loads((report / "summary.json").read_text())]
        if summary["settings"]["host"] == "http://front:8080"
    ]
    assert summary["passed"] and summary["failures"] == 0
    books = summary["cancellation"]
    assert books["aborts_sent"] > 0 and books["cancellations_observed"] == books["aborts_sent"]
    assert containers("locust-master", all=True) == []


def test_locustsUIRunsInContainersOnLoopback(stack):
    """
    `make load-ui-compose`: locust's master serves its web UI, published on
    the host's loopback only; Ctrl-C (SIGINT to make) stops it and leaves
    no locust container.
    """
    import signal
    import urllib.request

    process = subprocess.Popen(
        ["make", "load-ui-compose", "WORKERS=1"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:

        def answers():
            try:
                with urllib.request.urlopen("http://127.0.0.1:18089/", timeout=2) as page:
                    return page.status == 200 and b"locust" in page.read().lower()
            except OSError:
                return False

        waitFor(answers, timeout=180, interval=1, what="locust's UI")
        [master] = containers("locust-master")
        ports = docker("port", master, "8089").split()
        assert ports and all(p.startswith("127.0.0.1:") for p in ports)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    waitFor(lambda: containers("locust-master", all=True) == [], timeout=60, what="locust gone")
    assert containers("locust-worker", all=True) == []


def test_downLeavesNothingBehind(stack):
    make("down")
    assert containers(all=True) == []
    networks = docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}")
    assert networks.split() == []
    volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}")
    assert volumes.split() == []
    make("up")  # the fixture's own `down` ends the module
