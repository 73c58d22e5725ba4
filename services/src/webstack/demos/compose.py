# -*- test-case-name: tests.test_demos -*-
"""
The compose stack of C{make up}, as a demo drives it: its containers by
service, scaling, killing a service's process (so the restart policy brings
the container back, as it would after a crash: C{docker kill} counts as an
operator's stop, which the policy respects), restarting, and reading a
replica's own endpoints from inside its container (the backends are on an
internal network, reachable only through the front).

The project and the published front are what the Makefile uses:
C{COMPOSE_PROJECT_NAME} (default C{webstack}) and C{WEBSTACK_PUBLISH}
(default C{127.0.0.1:8080}).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]

_READ_INSIDE = (
    "import sys, urllib.request;"
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8080' + sys.argv[1],"
    " timeout=5).read().decode())"
)
# The service's own process: the child of the container's init.
_KILL_SERVICE = (
    "import os, signal\n"
    "for pid in os.listdir('/proc'):\n"
    "    if pid.isdigit() and int(pid) > 1:\n"
    "        try:\n"
    "            stat = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()\n"
    "        except OSError:\n"
    "            continue\n"
    "        if stat[1] == '1':\n"
    "            os.kill(int(pid), signal.SIGKILL)\n"
)


class StackError(Exception):
    """
    A docker or compose command failed; the message says which and why.
    """


def _composeCommand() -> list[str]:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return ["docker", "compose"] if probe.returncode == 0 else ["docker-compose"]


@dataclass
class ComposeStack:
    project: str = field(
        default_factory=lambda: os.environ.get("COMPOSE_PROJECT_NAME", "webstack")
    )
    publish: str = field(
        default_factory=lambda: os.environ.get("WEBSTACK_PUBLISH", "127.0.0.1:8080")
    )

    @property
    def front(self) -> tuple[str, int]:
        host, _, port = self.publish.rpartition(":")
        return (host if host not in ("", "0.0.0.0") else "127.0.0.1"), int(port)

    def _run(self, command: list[str], timeout: float = 120) -> str:
        try:
            result = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                env={**os.environ, "COMPOSE_PROJECT_NAME": self.project},
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"{' '.join(command)}: no answer within {timeout:g} s") from None
        if result.returncode != 0:
            raise StackError(f"{' '.join(command)}: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def docker(self, *args: str, timeout: float = 120) -> str:
        return self._run(["docker", *args], timeout)

    def compose(self, *args: str, timeout: float = 180) -> str:
        return self._run([*_composeCommand(), *args], timeout)

    def containers(self, service: str) -> list[str]:
        """
        The names of C{service}'s running containers, in a stable order.
        """
        out = self.docker(
            "ps", "--format", "{{.Names}}",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        )
        return sorted(out.split())

    def hostname(self, container: str) -> str:
        """
        What the container's service puts in C{X-Served-By}.
        """
        return self.docker("inspect", "-f", "{{.Config.Hostname}}", container).strip()

    def readJSON(self, container: str, path: str) -> dict:
        """
        C{GET path} on the replica itself, from inside its container.
        """
        out = self.docker("exec", container, "python", "-c", _READ_INSIDE, path, timeout=30)
        return json.loads(out)

    def scale(self, service: str, replicas: int, limit: float = 120) -> None:
        """
        Run C{replicas} containers of C{service} and wait until every one is
        healthy, as C{make scale} does.
        """
        self.compose(
            "up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={replicas}", service
        )
        deadline = time.monotonic() + limit
        while True:
            running = self.containers(service)
            if len(running) == replicas and all(
                self.state(c) == "running healthy" for c in running
            ):
                return
            if time.monotonic() > deadline:
                raise StackError(f"{service}: not {replicas} healthy containers in {limit:g} s")
            time.sleep(0.5)

    def crash(self, container: str) -> None:
        """
        Kill the service's process inside C{container}, as a crash would.
        The container stops with it, and so does this C{docker exec}: its
        failing is the kill succeeding, so the container's restart count is
        what tells.
        """
        try:
            self.docker("exec", container, "python", "-c", _KILL_SERVICE, timeout=30)
        except StackError:
            pass

    def restart(self, container: str, timeout: int = 15) -> None:
        """
        C{docker restart}: SIGTERM (the service drains), then start.
        """
        self.docker("restart", "-t", str(timeout), container, timeout=timeout + 60)

    def state(self, container: str) -> str:
        """
        C{running (healthy)}, C{restarting}, C{exited}...
        """
        out = self.docker(
            "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            container,
        )
        return out.strip()

    def restartCount(self, container: str) -> int:
        return int(self.docker("inspect", "-f", "{{.RestartCount}}", container).strip())
