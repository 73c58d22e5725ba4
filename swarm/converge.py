"""
Wait until a swarm stack has converged, and say what is wrong if it does
not: `make swarm-up`, `swarm-scale` and `swarm-update` end with this.

Converged means: every service of the stack runs as many tasks as it asks
for, all healthy (a task with a health check is "running" only once it
passes); no update or rollback is in progress; and the front on this node
answers /-/readyz and sees, for every route, exactly the running tasks of
the service behind it (by the tasks.<service> name it resolves), all
available.  That last part is what a client relies on: a task the engine
calls running but the front has not resolved yet serves nobody.

With --updated SERVICE, that service's last update must also have
completed (not rolled back), and begun after this program started unless
--since says when.

    python3 swarm/converge.py STACK --port 8080 [--timeout 300] [--updated async]

Exits 0 once converged, 1 with a report on time-out or a rolled-back
update, 2 on bad arguments.  Polls once a second; bounded by --timeout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

STACK_LABEL = "com.docker.stack.namespace"
UPSTREAM_PREFIX = "WEBSTACK_FRONT_ROUTES_"
UPSTREAM_SUFFIX = "_UPSTREAM"


def docker(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def services(stack: str) -> dict[str, dict]:
    """
    The stack's services, by their name in the stack file.
    """
    ids = docker("service", "ls", "-q", "--filter", f"label={STACK_LABEL}={stack}").split()
    if not ids:
        return {}
    found = json.loads(docker("service", "inspect", *ids))
    return {s["Spec"]["Name"].removeprefix(stack + "_"): s for s in found}


def runningTasks(stack: str, name: str) -> list[dict]:
    ids = docker(
        "service", "ps", "-q", "--no-trunc",
        "--filter", "desired-state=running", f"{stack}_{name}",
    ).split()
    if not ids:
        return []
    return json.loads(docker("inspect", *ids))


def parseTime(text: str) -> float:
    """
    The engine's timestamps (RFC 3339, nanoseconds) as seconds since the epoch.
    """
    head, _, rest = text.partition(".")
    zone = rest.lstrip("0123456789") if rest else text[19:]
    fraction = float("0." + rest[: len(rest) - len(zone)]) if rest else 0.0
    zone = "+00:00" if zone in ("Z", "") else zone
    return datetime.fromisoformat(head[:19] + zone).timestamp() + fraction


def frontRoutes(front: dict) -> dict[str, str]:
    """
    Route name -> the service behind it, from the front's upstream
    variables (tasks.<service>:8080).
    """
    routes = {}
    for entry in front["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", []):
        key, _, value = entry.partition("=")
        if key.startswith(UPSTREAM_PREFIX) and key.endswith(UPSTREAM_SUFFIX):
            route = key[len(UPSTREAM_PREFIX): -len(UPSTREAM_SUFFIX)].lower()
            host = value.split(",")[0].rsplit(":", 1)[0]
            routes[route] = host.removeprefix("tasks.")
    return routes


def getJSON(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def problems(stack: str, port: int, updated: str | None, since: float) -> list[str]:
    """
    What still stands between the stack and convergence; empty when
    converged.  Raises L{RolledBack} for a failed update.
    """
    found = services(stack)
    if not found:
        return [f"no service of stack {stack!r} exists"]
    wrong = []
    running: dict[str, int] = {}
    node = docker("info", "-f", "{{.Swarm.NodeID}}").strip()
    frontHere = False
    for name, service in sorted(found.items()):
        desired = service["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas")
        tasks = runningTasks(stack, name)
        up = [t for t in tasks if t["Status"]["State"] == "running"]
        running[name] = len(up)
        if name == "front":
            frontHere = any(t.get("NodeID") == node for t in up)
        if desired is not None and len(up) != desired:
            states = ", ".join(sorted(t["Status"]["State"] for t in tasks)) or "none"
            errors = {t["Status"].get("Err") for t in tasks if t["Status"].get("Err")}
            wrong.append(
                f"{name}: {len(up)} of {desired} tasks running (tasks: {states})"
                + (f"; {'; '.join(sorted(errors))}" if errors else "")
            )
        status = service.get("UpdateStatus") or {}
        state = status.get("State", "")
        if state in ("updating", "rollback_started", "paused", "rollback_paused"):
            wrong.append(f"{name}: update {state}: {status.get('Message', '')}")
        if name == updated:
            started = parseTime(status["StartedAt"]) if status.get("StartedAt") else 0.0
            if started < since:
                wrong.append(f"{name}: no update started yet")
            elif state in ("rollback_completed", "rollback_paused"):
                raise RolledBack(f"{name}: the update was rolled back: {status.get('Message', '')}")
            elif state != "completed":
                wrong.append(f"{name}: update {state or 'not done'}")
    if wrong:
        return wrong
    if "front" not in found:
        return []
    if not frontHere:
        print(f"converge: no front task on this node: not asked through 127.0.0.1:{port}", flush=True)
        return []
    base = f"http://127.0.0.1:{port}"
    try:
        getJSON(base + "/-/readyz")
        demos = getJSON(base + "/")["demos"]
    except (OSError, ValueError, KeyError) as e:
        return [f"the front on {base} does not answer: {e}"]
    routes = frontRoutes(found["front"])
    for demo in demos:
        service = routes.get(demo["route"])
        if service is None:
            continue
        available = sum(1 for r in demo["replicas"] if r.get("available"))
        if demo["state"] != "ok" or available != running.get(service, 0) or len(demo["replicas"]) != available:
            wrong.append(
                f"front: route {demo['route']} sees {available} available of"
                f" {len(demo['replicas'])} resolved, {running.get(service, 0)} {service} task(s) running"
            )
    return wrong


class RolledBack(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--port", type=int, default=8080, help="the front's published port")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--updated", help="a service whose update must have completed")
    parser.add_argument("--since", type=float, help="...and begun after this (epoch seconds)")
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be between 0 and 3600 seconds")
    start = time.time()
    since = args.since if args.since is not None else start
    deadline = time.monotonic() + args.timeout
    last: list[str] = []
    while True:
        try:
            now = problems(args.stack, args.port, args.updated, since)
        except RolledBack as e:
            print(f"converge: {e}", file=sys.stderr)
            return 1
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            now = [str(e)]
        if not now:
            print(f"converge: {args.stack} converged in {time.time() - start:.1f}s", flush=True)
            return 0
        if now != last:
            print("converge: waiting: " + "; ".join(now), flush=True)
            last = now
        if time.monotonic() >= deadline:
            print(f"converge: {args.stack} not converged after {args.timeout:g}s:", file=sys.stderr)
            for line in now:
                print(f"  {line}", file=sys.stderr)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    raise SystemExit(main())
