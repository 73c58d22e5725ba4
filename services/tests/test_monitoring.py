"""
Prometheus (monitoring/, issue 11 part 3) and `make trace` (part 5) on the
real containers: `make up` starts Prometheus healthy and on loopback, it
scrapes every replica of every service and follows `make scale`, every
recording rule has a sample per route once requests went through the front
(with the figures those requests make), an alert fires for a replica that
stops answering, MONITORING=0 leaves Prometheus out, `make trace` prints a
request's lines from the front and its backend in time order, and `make
down` leaves nothing, Prometheus's samples included.  The rules' own unit
tests (monitoring/tests/rules_test.yml, promtool's clock) run in the image.

The stack is its own compose project on its own ports (webstack-mon, 18180
and 19190), so neither test_compose's webstack-test (18080) nor a stack a
developer has up (8080, 9090) is touched.  Without a Docker engine the
container tests are skipped; the checks of the files against the registry
are not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import tomllib
import urllib.parse
from pathlib import Path

import pytest
import yaml

from webstack import registry

from .support import rawSend, request, waitFor

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROJECT = "webstack-mon"
PORT = 18180
PROMETHEUS = 19190
SERVICES = {service.name for service in registry.SERVICES}


def engineAnswers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


needsEngine = pytest.mark.skipif(
    not engineAnswers(), reason="no Docker engine answers on this machine"
)

ENV = {
    **os.environ,
    "COMPOSE_PROJECT_NAME": PROJECT,
    "WEBSTACK_PUBLISH": f"127.0.0.1:{PORT}",
    "WEBSTACK_PROMETHEUS_PUBLISH": f"127.0.0.1:{PROMETHEUS}",
}
ENV.pop("MONITORING", None)


def make(*targets, env=None, timeout=900, check=True):
    result = subprocess.run(
        ["make", "--no-print-directory", *targets], cwd=ROOT, env=env or ENV,
        capture_output=True, text=True, timeout=timeout,
    )
    if check:
        assert result.returncode == 0, f"make {' '.join(targets)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def docker(*args) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def containers(service=None, all=False) -> list[str]:
    filters = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
    if service:
        filters += ["--filter", f"label=com.docker.compose.service={service}"]
    return docker("ps", *(["-a"] if all else []), "-q", *filters).split()


def prometheus(path: str) -> dict:
    import json

    response, body = request(PROMETHEUS, "GET", path, timeout=10)
    assert response.status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]


def query(expr: str) -> dict[str, float]:
    """
    An instant query's answer, by its C{route} label (or C{""}).
    """
    data = prometheus("/api/v1/query?query=" + urllib.parse.quote(expr))
    return {r["metric"].get("route", ""): float(r["value"][1]) for r in data["result"]}


def targets() -> dict[str, list[dict]]:
    """
    Prometheus's active targets, by job.
    """
    found: dict[str, list[dict]] = {}
    for target in prometheus("/api/v1/targets?state=active")["activeTargets"]:
        found.setdefault(target["labels"]["job"], []).append(target)
    return found


def upTargets(job: str) -> int:
    return sum(1 for t in targets().get(job, []) if t["health"] == "up")


# The files, against the registry: no containers needed.


def prometheusConfig() -> dict:
    return yaml.safe_load((MONITORING / "prometheus.yml").read_text())


def test_prometheusScrapesEveryServiceOfTheRegistryEveryTwoSeconds():
    config = prometheusConfig()
    assert config["global"]["scrape_interval"] in ("1s", "2s")
    assert config["global"]["evaluation_interval"] == config["global"]["scrape_interval"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == SERVICES | {"prometheus"}
    for name in SERVICES:
        [discovery] = jobs[name]["dns_sd_configs"]
        # The compose service's name, which the engine's DNS answers with
        # every replica's address; refreshed as often as scraped.
        assert discovery == {"names": [name], "type": "A", "port": 8080, "refresh_interval": "2s"}
        assert jobs[name].get("metrics_path", "/metrics") == (
            "/-/metrics" if name == "front" else "/metrics"
        )


def test_everyRoutePrefixIsItsNameBetweenSlashes():
    """
    The recording rules turn the front's prefix labels ("/async/") into
    route names with one regular expression: every route, in the registry
    and in stack.toml, must fit it.
    """
    rules = (MONITORING / "rules" / "routes.yml").read_text()
    [pattern] = set(re.findall(r'"route", "\$1", "route", "([^"]+)"', rules))
    routes = tomllib.loads((ROOT / "config" / "stack.toml").read_text())["front"]["routes"]
    assert set(routes) == {route.name for route in registry.ROUTES}
    for route in registry.ROUTES:
        for prefix in (route.prefix, routes[route.name]["prefix"]):
            found = re.fullmatch(pattern, prefix)
            assert found and found.group(1) == route.name, (route.name, prefix)
    assert not re.fullmatch(pattern, "/-/")


def test_composeRunsPrometheusHardenedOnlyInItsProfile():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prom = spec["services"]["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    assert prom["image"] == "webstack/prometheus:dev" and prom["pull_policy"] == "never"
    assert prom["build"]["context"] == "monitoring"
    assert prom["read_only"] is True and prom["cap_drop"] == ["ALL"]
    assert prom["security_opt"] == ["no-new-privileges:true"]
    assert {"pids_limit", "mem_limit", "memswap_limit", "cpus"} <= set(prom)
    assert prom["ports"] == ["${WEBSTACK_PROMETHEUS_PUBLISH:-127.0.0.1:9090}:9090"]
    assert set(prom["networks"]) == {"backend", "edge"}
    assert prom["volumes"] == ["prometheus-data:/prometheus"]
    assert "prometheus-data" in spec["volumes"]
    dockerfile = (MONITORING / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "USER prometheus" in dockerfile
    assert "--no-install-recommends" in dockerfile


def test_monitoringIsOneOrZero():
    result = make("help", env={**ENV, "MONITORING": "yes"}, check=False)
    assert result.returncode == 2
    assert "MONITORING is 1 (Prometheus with the stack, the default) or 0 (without), not 'yes'" in result.stderr
    assert make("help", env={**ENV, "MONITORING": "0"}).returncode == 0


# The containers.


@pytest.fixture(scope="module")
def stack():
    make("down")
    assert containers(all=True) == []
    make("up")
    yield PORT
    make("down")


@pytest.mark.compose
@needsEngine
def test_theRulesUnitTestsPassInTheImage(stack):
    """
    promtool's own clock over made-up series (monitoring/tests/): each
    recording rule's figure, each alert pending then firing at its time, no
    alert for aborts a naive endpoint counts a minute late.  The files of
    this checkout, not the image's copy.
    """
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{MONITORING}:/m:ro",
         "--entrypoint", "sh", "webstack/prometheus:dev", "-c",
         "promtool check config /etc/webstack/prometheus.yml >/dev/null"
         " && cd /tmp && promtool check rules /m/rules/*.yml && promtool test rules /m/tests/*.yml"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.compose
@needsEngine
def test_prometheusIsHealthyAndPublishedOnLoopbackOnly(stack):
    [container] = containers("prometheus")
    assert "(healthy)" in docker("ps", "--filter", f"id={container}", "--format", "{{.Status}}")
    host = docker("inspect", "-f", "{{json .HostConfig.PortBindings}}", container)
    assert '"HostIp":"127.0.0.1"' in host and f'"HostPort":"{PROMETHEUS}"' in host
    user = docker("inspect", "-f", "{{.Config.User}}", container).strip()
    assert user == "prometheus"
    assert docker("exec", container, "id", "-u").strip() != "0"
    # Debian's package has Prometheus's classic UI (its React one needs
    # node modules Debian does not have), every asset from Debian's own
    # packages: nothing from a CDN.
    response, _ = request(PROMETHEUS, "GET", "/")
    assert response.status == 302 and response.headers["Location"] == "/classic/graph"
    response, body = request(PROMETHEUS, "GET", "/classic/graph")
    assert response.status == 200 and b"Prometheus Time Series" in body
    assets = re.findall(rb'(?:src|href)="(/classic/static/[^"?]+)', body)
    assert len(assets) > 5
    # (Its "Help" link to prometheus.io is a link, nothing it loads.)
    assert not re.search(rb'(?:src="|<link[^>]*href=")(?:https?:)?//', body)
    for asset in assets:
        assert request(PROMETHEUS, "GET", asset.decode())[0].status == 200, asset
    flags = prometheus("/api/v1/status/flags")
    assert flags["storage.tsdb.retention.time"] == "2h"


@pytest.mark.compose
@needsEngine
def test_everyReplicaOfEveryServiceIsScraped(stack):
    waitFor(
        lambda: all(upTargets(name) == 1 for name in SERVICES),
        timeout=30, interval=1, what="every service one target, up",
    )
    found = targets()
    assert set(found) == SERVICES | {"prometheus"}
    # The front on two networks is still one target, not two.
    assert len(found["front"]) == 1
    assert found["front"][0]["scrapeUrl"].endswith(":8080/-/metrics")


@pytest.mark.compose
@needsEngine
def test_scalingIsFollowedWithinSeconds(stack):
    """
    `make scale SERVICE=async N=3` returns once the replicas are healthy;
    within a few seconds Prometheus scrapes all three and the front counts
    three replicas for the route.  One paused replica is a
    target down, and WebstackReplicaDown fires 10 s later.
    """
    make("scale", "SERVICE=async", "N=3")
    try:
        started = time.monotonic()
        waitFor(lambda: upTargets("async") == 3, timeout=15, interval=0.5, what="three async targets up")
        seen = time.monotonic() - started
        print(f"three async targets up {seen:.1f} s after make scale returned")
        waitFor(
            lambda: query("webstack:route_replicas_up").get("async") == 3,
            timeout=15, interval=0.5, what="webstack:route_replicas_up{route=async} == 3",
        )

        paused = containers("async")[0]
        address = docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", paused
        ).strip()
        docker("pause", paused)
        try:
            down = waitFor(
                lambda: [
                    a for a in prometheus("/api/v1/alerts")["alerts"]
                    if a["labels"]["alertname"] == "WebstackReplicaDown" and a["state"] == "firing"
                ],
                timeout=40, interval=1, what="WebstackReplicaDown firing",
            )
            assert [a["labels"]["instance"] for a in down] == [f"{address}:8080"]
            assert down[0]["labels"]["job"] == "async"
        finally:
            docker("unpause", paused)
    finally:
        make("scale", "SERVICE=async", "N=1")
    waitFor(lambda: len(targets().get("async", [])) == 1, timeout=15, interval=0.5, what="one async target")


class Traffic:
    """
    Requests through the front until stopped, bounded in count: the async
    route's delayed, held and abandoned requests, auth's 401s, and WSGI's
    hello (200) and raise (500) one for one.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = threading.Event()
        self.statuses: dict[str, list[int]] = {}
        self.threads = [
            threading.Thread(target=self.run, args=(self.light,), daemon=True),
            threading.Thread(target=self.run, args=(self.held,), daemon=True),
        ]

    def run(self, step) -> None:
        for _ in range(2000):
            if self.stopped.is_set():
                return
            step()

    def note(self, route, status):
        self.statuses.setdefault(route, []).append(status)

    def light(self) -> None:
        for route, path in (
            ("async", "/async/delay?seconds=0"),
            ("auth", "/auth/"),
            ("wsgi", "/wsgi/hello"),
            ("wsgi", "/wsgi/app/raise"),
            ("static", "/static/"),
        ):
            self.note(route, request(self.port, "GET", path, timeout=10)[0].status)
        # A client that leaves: the front cancels its upstream request.
        s = rawSend(
            self.port,
            b"GET /async/interruptible?seconds=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        time.sleep(0.2)
        s.close()
        time.sleep(0.1)

    def held(self) -> None:
        # About 1.2 s each: in flight while it lasts, and the async route's
        # p99 above a second.
        self.note("async", request(self.port, "GET", "/async/delay?seconds=1.2", timeout=10)[0].status)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=30)


@pytest.mark.compose
@needsEngine
def test_eachRecordingRuleHasASamplePerRouteWithTheFiguresOfTheTraffic(stack):
    def figures():
        return {
            name: query(name)
            for name in (
                "webstack:route_requests:rate10s",
                "webstack:route_5xx:rate10s",
                "webstack:route_error_ratio:rate10s",
                "webstack:route_latency_p99:10s",
                "webstack:route_cancellations:rate10s",
                "webstack:route_in_flight",
                "webstack:route_replicas_up",
            )
        }

    def shown(f):
        return (
            all(f["webstack:route_requests:rate10s"].get(r, 0) > 0 for r in ("async", "auth", "wsgi", "static"))
            and f["webstack:route_5xx:rate10s"].get("wsgi", 0) > 0
            and 0.2 < f["webstack:route_error_ratio:rate10s"].get("wsgi", 0) < 0.8
            and f["webstack:route_latency_p99:10s"].get("async", 0) >= 1.0
            and f["webstack:route_cancellations:rate10s"].get("async", 0) > 0
            and f["webstack:route_in_flight"].get("async", 0) >= 1
        )

    with Traffic(stack) as traffic:
        f = waitFor(lambda: (lambda f: shown(f) and f)(figures()), timeout=60, interval=1, what="the figures")
    for name, byRoute in f.items():
        print(name, {route: round(value, 3) for route, value in sorted(byRoute.items())})
    assert set(traffic.statuses["wsgi"]) == {200, 500}
    assert set(traffic.statuses["auth"]) == {401}
    routes = {route.name for route in registry.ROUTES}
    # Every rule has a sample for every route that had requests; the
    # counts (not p99, which needs a request in the window) for every one.
    for name, byRoute in f.items():
        expected = {"async", "auth", "wsgi", "static"} if name.endswith("p99:10s") else routes
        assert expected <= set(byRoute), (name, byRoute)
    assert f["webstack:route_5xx:rate10s"]["auth"] == 0
    assert f["webstack:route_error_ratio:rate10s"]["async"] == 0
    assert set(f["webstack:route_replicas_up"].values()) == {1}
    assert f["webstack:route_latency_p99:10s"]["static"] < 1.0


@pytest.mark.compose
@needsEngine
def test_makeTraceFollowsOneRequestThroughTheContainers(stack):
    """
    One request to /async/ with a chosen X-Request-Id: `make trace` reads
    every container's log and prints the async replica's line, then the
    front's, in time order; another request's lines are not there.
    """
    response, _ = request(stack, "GET", "/async/delay?seconds=0.2", headers={"X-Request-Id": "mon-trace-0001"})
    assert response.status == 200 and response.headers["X-Request-Id"] == "mon-trace-0001"
    request(stack, "GET", "/async/delay?seconds=0", headers={"X-Request-Id": "mon-trace-0002"})

    def traced():
        result = make("trace", "ID=mon-trace-0001", check=False, timeout=300)
        lines = result.stdout.splitlines()
        return result.returncode == 0 and len(lines) == 2 and (result, lines)

    # A line reaches the container's log once its reactor turn ends.
    result, lines = waitFor(traced, timeout=30, interval=1, what="both lines in the logs")
    print(result.stdout + result.stderr)
    # Compose v1 names a container's lines "async_1", v2 "webstack-mon-async-1".
    sources = [re.sub(rf"^{PROJECT}[-_]", "", line.split()[1]) for line in lines]
    assert sources in (["async_1", "front_1"], ["async-1", "front-1"]), sources
    times = [line.split()[0] for line in lines]
    assert times == sorted(times)
    assert all("GET /async/delay?seconds=0.2 200" in line for line in lines)
    assert "mon-trace-0002" not in result.stdout


@pytest.mark.compose
@needsEngine
def test_monitoringOffLeavesPrometheusOut(stack):
    """
    MONITORING=0 make up on the running stack: Prometheus is removed, the
    rest stays up and healthy; make up again brings it back.
    """
    make("up", env={**ENV, "MONITORING": "0"})
    assert containers("prometheus", all=True) == []
    assert len(containers()) == len(SERVICES)
    with pytest.raises(OSError):
        request(PROMETHEUS, "GET", "/-/ready", timeout=2)
    assert request(stack, "GET", "/-/readyz")[0].status == 200
    make("up")
    assert len(containers("prometheus")) == 1


@pytest.mark.compose
@needsEngine
def test_downRemovesPrometheusAndItsSamples(stack):
    volume = f"{PROJECT}_prometheus-data"
    assert docker("volume", "ls", "-q", "--filter", f"name={volume}").split() == [volume]
    make("down")
    assert containers(all=True) == []
    assert docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").split() == []
    assert docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").split() == []
