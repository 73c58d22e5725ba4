"""
The stack on Docker Swarm (issue 12): `make swarm-up` on a single-node
swarm converges and every demo answers through the front, published on
loopback only; a client abort through it cancels the backend's work; each
task sees only its own files, the user files and keys as secrets; `make
swarm-update SERVICE=async` under steady load loses no request and leaves
only new tasks; `make swarm-scale` spreads requests over three tasks; locust
runs as swarm services; `make swarm-down` leaves nothing and the engine's
swarm state as it found it.

Its own stack name and port (webstack-swarm-test, 28080), so neither a
developer's `make up` (8080), test_compose.py (18080) nor a developer's
`make swarm-up` is touched.  Needs a Docker engine; a machine without one
skips it.  The swarm it makes, if the engine is in none, it leaves again.
"""

import collections
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from webstack import registry

from .support import (
    checkAbortCancelsTheBackendWork,
    checkAuthAndSessions,
    checkEveryDemoAnswers,
    getJSON,
    request,
    waitFor,
)

ROOT = Path(__file__).resolve().parents[2]
STACK = "webstack-swarm-test"
PORT = 28080
LABEL = f"label=com.docker.stack.namespace={STACK}"
MARKER = ROOT / "build" / "swarm" / "made-swarm"

pytestmark = pytest.mark.compose


def engineAnswers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


if not engineAnswers():
    pytest.skip("no Docker engine answers on this machine", allow_module_level=True)


ENV = {**os.environ, "SWARM_STACK": STACK, "SWARM_PUBLISH": str(PORT)}


def make(*targets, timeout=900) -> str:
    result = subprocess.run(
        ["make", *targets], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"make {' '.join(targets)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def docker(*args) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def swarmState() -> str:
    return docker("info", "-f", "{{.Swarm.LocalNodeState}}").strip()


def hasGwbridge() -> bool:
    return "docker_gwbridge" in docker("network", "ls", "--format", "{{.Name}}").split()


def stackObjects() -> dict[str, list[str]]:
    """
    What the stack has in the swarm: services, networks, configs, secrets.
    """
    if swarmState() != "active":
        return {kind: [] for kind in ("service", "network", "config", "secret")}
    return {
        kind: docker(kind, "ls", "--filter", LABEL, "--format", "{{.Name}}").split()
        for kind in ("service", "network", "config", "secret")
    }


def tasks(service: str) -> list[dict]:
    """
    The running tasks of one of the stack's services, as the engine has them.
    """
    ids = docker(
        "service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running",
        f"{STACK}_{service}",
    ).split()
    found = json.loads(docker("inspect", *ids)) if ids else []
    return [t for t in found if t["Status"]["State"] == "running"]


def container(service: str) -> str:
    [task] = tasks(service)
    return task["Status"]["ContainerStatus"]["ContainerID"]


def spec(service: str) -> dict:
    [found] = json.loads(docker("service", "inspect", f"{STACK}_{service}"))
    return found["Spec"]


@pytest.fixture(scope="module")
def swarm():
    before = {
        "state": swarmState(),
        "gwbridge": hasGwbridge(),
        # A swarm an earlier `make swarm-up` made (and would leave).
        "made": MARKER.read_text() if MARKER.exists() else "",
    }
    make("swarm-down")  # what an interrupted run may have left
    make("swarm-up")
    try:
        yield before
    finally:
        make("swarm-down")


# The stack file, read as written.


STACKFILE = yaml.safe_load((ROOT / "swarm" / "stack.yml").read_text())


def owner(routeName: str) -> registry.Service:
    [found] = [s for s in registry.BACKENDS if routeName in {r.name for r in s.routes}]
    return found


def test_theStackFileRunsEveryServiceAndRoutesByTaskNames():
    """
    Every service of the registry, by its name; the front reaches each
    route's service by tasks.<service>, which lists every task (no virtual
    IP: it needs IPVS).
    """
    services = STACKFILE["services"]
    assert set(services) == {s.name for s in registry.SERVICES}
    for service in registry.SERVICES:
        assert services[service.name]["command"] == [service.plugin]
        assert services[service.name]["deploy"]["endpoint_mode"] == "dnsrr"
    environment = services["front"]["environment"]
    upstreams = {k: v for k, v in environment.items() if k.endswith("_UPSTREAM")}
    assert upstreams == {
        f"WEBSTACK_FRONT_ROUTES_{r.name.upper()}_UPSTREAM": f"tasks.{owner(r.name).name}:8080"
        for r in registry.ROUTES
    }


def renderContent(tmp_path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python3", str(ROOT / "swarm" / "content.py"), STACK, str(config), str(tmp_path / "c.json")],
        capture_output=True, text=True, timeout=60,
    )


def test_theContentIsOneConfigPerFileNamedByItsDigest(tmp_path):
    """
    A changed file is a new config (swarm configs cannot change), so the
    services reading it roll; a file too large for swarm is refused with
    the reason, not at deploy time.
    """
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    assert renderContent(tmp_path, config).returncode == 0
    first = json.loads((tmp_path / "c.json").read_text())
    (config / "static" / "index.html").write_text("changed")
    assert renderContent(tmp_path, config).returncode == 0
    second = json.loads((tmp_path / "c.json").read_text())
    changed = {v["name"] for v in second["configs"].values()} - {v["name"] for v in first["configs"].values()}
    assert len(changed) == 1 and "static-index-html" in changed.pop()
    assert set(second["secrets"]) == set(first["secrets"])
    (config / "static" / "huge.bin").write_bytes(b"x" * (1000 * 1024 + 1))
    result = renderContent(tmp_path, config)
    assert result.returncode == 1
    assert "huge.bin is 1024001 bytes; a swarm config holds at most 1024000" in result.stderr


def test_thePlacementExampleMergesOverTheStack(tmp_path):
    """
    SWARM_EXTRA's files are merged last: swarm/placement.example.yml's
    constraint reaches the front, whose one-per-node bound stays.
    """
    assert renderContent(tmp_path, ROOT / "config").returncode == 0
    merged = yaml.safe_load(docker(
        "stack", "config", "-c", str(ROOT / "swarm" / "stack.yml"), "-c", str(tmp_path / "c.json"),
        "-c", str(ROOT / "swarm" / "placement.example.yml"),
    ))
    front = merged["services"]["front"]["deploy"]
    assert front["replicas"] == 2
    assert front["placement"]["constraints"] == ["node.labels.webstack.edge == true"]
    assert front["placement"]["max_replicas_per_node"] == 1
    assert merged["services"]["async"]["deploy"]["replicas"] == 3


# The running stack.


def test_upConvergesWithTheDeploySettings(swarm):
    for service in registry.SERVICES:
        assert len(tasks(service.name)) == 1, service.name
        found = spec(service.name)
        assert found["EndpointSpec"]["Mode"] == "dnsrr"
        update = found["UpdateConfig"]
        assert update["Parallelism"] == 1 and update["FailureAction"] == "rollback"
        assert update["Order"] == ("stop-first" if service.name == "front" else "start-first")
        assert found["RollbackConfig"]["Parallelism"] == 1
        limits = found["TaskTemplate"]["Resources"]["Limits"]
        assert limits["NanoCPUs"] > 0 and limits["MemoryBytes"] > 0 and limits["Pids"] > 0
        assert found["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
        container = found["TaskTemplate"]["ContainerSpec"]
        assert container["ReadOnly"] and container["Init"]
        # Above runtime.drain_timeout (10 s): a task drains before it is killed.
        assert container["StopGracePeriod"] > 10 * 10**9
    ports = spec("front")["EndpointSpec"]["Ports"]
    assert ports == [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": PORT, "PublishMode": "host"}
    ]
    response, _ = request(PORT, "GET", "/-/readyz")
    assert response.status == 200


def test_theFrontIsPublishedOnLoopbackOnly(swarm):
    """
    Swarm's ports have no host address; the docker_gwbridge that
    `make swarm-up` makes with the swarm binds them on 127.0.0.1.
    """
    if swarm["state"] == "active" and not swarm["made"]:
        pytest.skip("a swarm make swarm-up did not make: its docker_gwbridge decides the address")
    bindings = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", container("front")))
    assert bindings["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]
    for service in registry.BACKENDS:
        ports = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", container(service.name)))
        assert not any(ports.values()), service.name


def test_everyDemoAnswersThroughTheFront(swarm):
    demos = {d["route"]: d for d in getJSON(PORT, "/")["demos"]}
    assert {name for name, d in demos.items() if d["state"] == "ok"} == {r.name for r in registry.ROUTES}
    checkEveryDemoAnswers(PORT)


def test_authReadsItsSecretsAndSessionsStick(swarm):
    checkAuthAndSessions(PORT)


OWN_CONFIG = {
    "front": ({"stack.toml"}, {"route.key"}),
    "async": ({"stack.toml"}, set()),
    "static": ({"stack.toml", "static", "rpy"}, set()),
    "wsgi": ({"stack.toml"}, set()),
    "cgi": ({"stack.toml", "cgi-bin"}, set()),
    "auth": ({"stack.toml", "auth"}, {"htpasswd", "htdigest", "digest.key"}),
    "session": ({"stack.toml"}, set()),
}
"""
Per service: what it finds in /app/config (swarm configs) and in
/run/secrets (secrets).
"""

LISTING = (
    "import os\n"
    "for top in ('/app/config', '/run/secrets'):\n"
    "    if not os.path.isdir(top): print(top, '-'); continue\n"
    "    print(top, ' '.join(sorted(os.listdir(top))))\n"
    "    for d, _, files in os.walk(top):\n"
    "        for f in files:\n"
    "            s = os.stat(os.path.join(d, f))\n"
    "            print('file', os.path.join(d, f), oct(s.st_mode & 0o777), s.st_uid)\n"
)


def test_eachTaskSeesOnlyItsOwnFilesAndTheSecretsAreSecrets(swarm):
    """
    As in compose, each service sees its own part of config/ and no more,
    here as swarm configs (they follow a task to any node); the user files
    and both keys are secrets, readable by the image's user alone, and
    never configs (which anyone who can list configs can read).
    """
    for service, (configs, secrets) in OWN_CONFIG.items():
        lines = docker("exec", container(service), "python", "-c", LISTING).splitlines()
        tops = dict(line.split(" ", 1) for line in lines if not line.startswith("file "))
        assert set(tops["/app/config"].split()) == configs, service
        seen = set(tops["/run/secrets"].split()) if tops["/run/secrets"] != "-" else set()
        assert seen == secrets, service
        files = {f.split()[1]: (f.split()[2], f.split()[3]) for f in lines if f.startswith("file ")}
        for path, (mode, uid) in files.items():
            if path.startswith("/run/secrets/"):
                assert (mode, uid) == ("0o400", "10001"), path
            else:
                assert mode in ("0o444", "0o555") and uid == "0", path
    cgi = docker("exec", container("cgi"), "ls", "-l", "/app/config/cgi-bin/hang.sh")
    assert cgi.startswith("-r-xr-xr-x")
    names = docker("config", "ls", "--filter", LABEL, "--format", "{{.Name}}")
    for secret in ("htpasswd", "htdigest", "digest-key", "route-key"):
        assert secret not in names


def test_aClientAbortThroughTheSwarmFrontCancelsTheBackendWork(swarm):
    checkAbortCancelsTheBackendWork(PORT)


class SteadyLoad:
    """
    Keep-alive clients asking the front for /async/delay?seconds=0 as fast
    as they can, until stopped (or 300 s at most); every answer but a 200,
    and every connection error, is a failure.
    """

    def __init__(self, port: int, clients: int = 16) -> None:
        self.port = port
        self.statuses: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        connection = None
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("GET", "/async/delay?seconds=0")
                response = connection.getresponse()
                response.read()
                with self._lock:
                    self.statuses[response.status] += 1
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                with self._lock:
                    self.errors[f"{type(e).__name__}: {e}"] += 1
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

    def __enter__(self):
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.seconds = time.monotonic() - self.started

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return self.sent - self.statuses[200]


def asyncRetries() -> float:
    text = request(PORT, "GET", "/-/metrics")[1].decode()
    found = re.findall(r'^front_upstream_retries_total\{route="async"\} (\S+)$', text, re.M)
    return sum(float(v) for v in found)


def test_aRollingUpdateUnderLoadLosesNoRequest(swarm):
    """
    The async task replaced while clients keep asking: the new task is
    healthy (and in DNS) before the old one is taken out of DNS and drains;
    a request that meets a replica going away is sent to another.  Not one
    fails, and afterwards the task is a new one.  One task, not several:
    then nothing but the update's order (start-first) keeps a replica
    serving throughout (stop-first fails this test: 502s).
    """
    old = {t["ID"] for t in tasks("async")}
    assert len(old) == 1
    retriesBefore = asyncRetries()
    with SteadyLoad(PORT) as load:
        time.sleep(2)  # the load is steady before the update begins
        began = time.monotonic()
        make("swarm-update", "SERVICE=async", timeout=300)
        took = time.monotonic() - began
        during = load.sent
        time.sleep(1)
    new = {t["ID"] for t in tasks("async")}
    print(
        f"\nswarm-update SERVICE=async: {took:.1f} s; {load.sent} requests in"
        f" {load.seconds:.1f} s ({load.sent / load.seconds:.0f}/s), {during} by the update's"
        f" end; failed {load.failed} {dict(load.errors)} {dict(load.statuses)};"
        f" front retries {asyncRetries() - retriesBefore:.0f}"
    )
    assert load.failed == 0, (dict(load.statuses), dict(load.errors))
    assert load.sent >= 20 * load.seconds, "the load was not steady"
    assert len(new) == 1 and not new & old


def test_scaleSpreadsRequestsOverThreeTasks(swarm):
    """
    Three tasks, each found by the front through tasks.async and each
    serving.  Requests go one at a time, so the front's balancing (fewest
    in flight, but a replica whose first answers were slow is sent little
    until its estimate decays, a few seconds) may take a while to reach a
    new task: asked in rounds of 30 until all three have answered.
    """
    make("swarm-scale", "SERVICE=async", "N=3")
    try:
        hosts = {t["Status"]["ContainerStatus"]["ContainerID"][:12] for t in tasks("async")}
        assert len(hosts) == 3
        seen: collections.Counter = collections.Counter()

        def everyTaskServed():
            for _ in range(30):
                response, _ = request(PORT, "GET", "/async/delay?seconds=0")
                assert response.status == 200
                seen[response.headers["X-Served-By"]] += 1
            return set(seen) == hosts

        waitFor(everyTaskServed, timeout=30, interval=0.5, what="every task serving")
        print(f"\nswarm-scale SERVICE=async N=3: {sum(seen.values())} requests served by {dict(seen)}")
        assert set(seen) == hosts
    finally:
        make("swarm-scale", "SERVICE=async", "N=1")


def test_aSessionStaysWithItsTask(swarm):
    """
    Two session tasks, each keeping its sessions in memory: the front's
    routing cookie names the task that made the session, so every visit
    counts on.
    """
    make("swarm-scale", "SERVICE=session", "N=2")
    try:
        response, _ = request(PORT, "GET", "/session/counter")
        jar = "; ".join(c.split(";")[0] for c in response.headers.get_all("Set-Cookie"))
        assert "WEBSTACK_ROUTE=" in jar
        servedBy = {response.headers["X-Served-By"]}
        for visit in range(2, 12):
            response, body = request(PORT, "GET", "/session/counter", headers={"Cookie": jar})
            assert body == f"Visit #{visit} for you!".encode()
            servedBy.add(response.headers["X-Served-By"])
        assert len(servedBy) == 1
    finally:
        make("swarm-scale", "SERVICE=session", "N=1")


def test_locustRunsAsSwarmServices(swarm):
    """
    `make swarm-load`: a master and two workers as swarm services against
    the swarm's front, the same report as `make load`; every abort is
    cancelled; the load stack is gone afterwards.
    """
    before = set((ROOT / "reports").glob("*")) if (ROOT / "reports").exists() else set()
    make("swarm-load", "WORKERS=2", "USERS=16", "SPAWN=16", "DURATION=6s", timeout=600)
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
    services = docker("service", "ls", "--format", "{{.Name}}").split()
    assert not [s for s in services if s.startswith(f"{STACK}-load_")]


def test_downLeavesNothingAndTheSwarmAsItWas(swarm):
    """
    Everything of the stack goes.  The swarm stays as it was before
    `swarm-up`, with one exception by design: a swarm an earlier `make
    swarm-up` made is left too once nothing else runs in it.
    """
    others = [
        name
        for name in docker("service", "ls", "--format", "{{.Name}}").split()
        if not name.startswith(f"{STACK}_")
    ]
    make("swarm-down")
    assert stackObjects() == {"service": [], "network": [], "config": [], "secret": []}
    if swarm["state"] == "active" and swarm["made"] and not others:
        assert swarmState() == "inactive"
        assert hasGwbridge() == (swarm["gwbridge"] and "gwbridge=made" not in swarm["made"])
    else:
        assert swarmState() == swarm["state"]
        assert hasGwbridge() == swarm["gwbridge"]
    if swarmState() != "active":
        assert not MARKER.exists()
