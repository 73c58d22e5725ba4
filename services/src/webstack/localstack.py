"""
The whole stack as local processes on loopback: C{make run}, and the stack
the integration tests and benchmarks start.

Each service runs as its own C{twistd -n webstack-NAME} process, exactly as in
its container.  Backends start first; the front starts once their ports are
known.  The processes' JSON log lines are passed through, prefixed with the
service's name.  SIGINT or SIGTERM stops every process with SIGTERM (each one
drains), waits for them, and exits 0.

With C{--ephemeral}, every service listens on a free port chosen by the
kernel (C{tcp:0}); the port is read from the service's own "listening" log
line, so nothing races for a port.

    python -m webstack.localstack [--config PATH] [--ephemeral]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

from webstack import registry

ROUTES = {service.name: tuple(route.name for route in service.routes) for service in registry.BACKENDS}
"""
The backends, in start order, each with the front routes it serves
(L{webstack.registry}); each has a C{webstack-NAME} plugin.
"""
BACKENDS = tuple(ROUTES)

LOGGER = "webstack.runtime.logs.jsonLogger"
REACTOR = "webstack"  # webstack.runtime.reactor
TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")
"""
twistd, run by this very interpreter (so by the same virtual environment).
"""
START_TIMEOUT = 30.0
RELAY_READ_BYTES = 1 << 16


class ServiceProcess:
    """
    One twistd process, its output relayed and remembered.
    """

    def __init__(
        self, name: str, env: dict[str, str], echo: bool, label: str = "", wrapper=()
    ) -> None:
        """
        @param wrapper: a command to run twistd under (C{make
            bench-instructions} runs a service under valgrind).
        """
        self.name = label or name
        self.port: int | None = None
        self.lines: deque[str] = deque(maxlen=20000)
        self._listening = threading.Event()
        self._echo = echo
        command = [
            *wrapper,
            *TWISTD,
            "-n",
            "--pidfile=",
            f"--logger={LOGGER}",
            f"--reactor={REACTOR}",
            f"webstack-{name}",
        ]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,
            # Its own session: a Ctrl-C in the terminal reaches only this
            # supervisor, which then stops every service with SIGTERM.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._relay, daemon=True)
        self._reader.start()

    def _relay(self) -> None:
        # Whatever the pipe holds, read at once and split in one piece: a
        # service under load writes thousands of lines a second, and a
        # Python turn per line cost this process (the benchmark's, beside
        # the servers it measures) 7 us of CPU per proxied request.
        fd = self.process.stdout.fileno()
        rest = b""
        while True:
            chunk = os.read(fd, RELAY_READ_BYTES)
            if not chunk:
                break
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                rest += chunk
                continue
            self._take((rest + chunk[:cut]).decode("utf-8", "replace").split("\n")[:-1])
            rest = chunk[cut:]
        if rest:
            self._take([rest.decode("utf-8", "replace")])
        self.process.stdout.close()
        self._listening.set()

    def _take(self, lines: list[str]) -> None:
        self.lines.extend(lines)
        if self._echo:
            prefix = f"{self.name:>7} | "
            sys.stdout.write("".join(f"{prefix}{line}\n" for line in lines))
            sys.stdout.flush()
        if self.port is None:
            for line in lines:
                if '"listening"' in line:
                    try:
                        self.port = int(json.loads(line)["port"])
                    except (ValueError, KeyError):
                        continue
                    self._listening.set()
                    break

    def waitListening(self, timeout: float) -> int:
        if not self._listening.wait(timeout) or self.port is None:
            try:
                status = self.process.wait(5)
            except subprocess.TimeoutExpired:
                status = "still running"
            tail = "\n".join(list(self.lines)[-15:])
            raise RuntimeError(
                f"webstack-{self.name} did not start listening (exit status {status}):\n{tail}"
            )
        return self.port

    def events(self, event: str | None = None) -> list[dict]:
        """
        This process's JSON log records so far (of one C{event} kind).
        """
        records = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if event is None or record.get("event") == event:
                records.append(record)
        return records

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def waitReady(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout:g}s: {last}")


class LocalStack:
    """
    The running stack.  Use as a context manager, or C{start()}/C{stop()}.

    @ivar services: the processes by name, C{"front"} included.
    """

    def __init__(
        self,
        config: str | None = None,
        *,
        ephemeral: bool = False,
        backends: tuple[str, ...] = BACKENDS,
        env: dict[str, str] | None = None,
        echo: bool = False,
        replicas: dict[str, int] | None = None,
    ) -> None:
        root = Path(__file__).resolve().parents[3]
        self.config = config or os.environ.get("WEBSTACK_CONFIG") or str(
            root / "config" / "stack.toml"
        )
        self.ephemeral = ephemeral
        self.backends = backends
        self.extraEnv = env or {}
        self.echo = echo
        self.replicas = replicas or {}
        self.services: dict[str, ServiceProcess] = {}

    def _env(self, overrides: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env["WEBSTACK_CONFIG"] = self.config
        src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [src, env.get("PYTHONPATH", "")])
        )
        env.update(self.extraEnv)
        env.update(overrides)
        return env

    def start(self) -> "LocalStack":
        try:
            overrides: dict[str, str] = {}
            for name in self.backends:
                for replica in self.replicaNames(name):
                    own = {}
                    if self.ephemeral or replica != name:
                        own[f"WEBSTACK_{name.upper()}_LISTEN"] = "tcp:0:interface=127.0.0.1"
                    self.services[replica] = ServiceProcess(
                        name, self._env(own), self.echo, label=replica
                    )
            for name in self.backends:
                ports = [
                    self.services[r].waitListening(START_TIMEOUT)
                    for r in self.replicaNames(name)
                ]
                for route in ROUTES[name]:
                    overrides[f"WEBSTACK_FRONT_ROUTES_{route.upper()}_UPSTREAM"] = ",".join(
                        f"127.0.0.1:{port}" for port in ports
                    )
            if self.ephemeral:
                overrides["WEBSTACK_FRONT_LISTEN"] = "tcp:0:interface=127.0.0.1"
            self._frontEnv = self._env(overrides)
            self._startFront()
            for name in self.backends:
                for replica in self.replicaNames(name):
                    waitReady(self.url(replica, "/readyz"), START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _startFront(self) -> None:
        front = ServiceProcess("front", self._frontEnv, self.echo)
        self.services["front"] = front
        front.waitListening(START_TIMEOUT)
        waitReady(self.url("front", "/-/readyz"), START_TIMEOUT)

    def restartFront(self, timeout: float = 20.0) -> int:
        """
        Stop the front (SIGTERM: it drains) and start it again with the same
        settings, the backends left running; return its exit status.  With
        C{ephemeral}, the new front listens on a new port.
        """
        front = self.services["front"]
        front.terminate()
        status = front.wait(timeout)
        self._startFront()
        return status

    def replicaNames(self, name: str) -> list[str]:
        """
        C{name}, then C{name-2}, C{name-3}... for each extra replica.
        """
        return [name] + [f"{name}-{n}" for n in range(2, self.replicas.get(name, 1) + 1)]

    def url(self, service: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.services[service].port}{path}"

    def stop(self, timeout: float = 20.0) -> dict[str, int]:
        """
        SIGTERM every process, front first, and wait.  Returns exit statuses.
        """
        order = ["front", *reversed([r for n in self.backends for r in self.replicaNames(n)])]
        for name in order:
            if name in self.services:
                self.services[name].terminate()
        return {
            name: self.services[name].wait(timeout)
            for name in order
            if name in self.services
        }

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="webstack.localstack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", help="the stack's TOML file")
    parser.add_argument(
        "--ephemeral", action="store_true", help="listen on free ports"
    )
    args = parser.parse_args(argv)

    # A signal handler must not touch a lock (a second signal arriving
    # inside Event.set() would wait on the lock the first one holds): it
    # only sets a flag, which the loop below reads.
    stopping = []

    def onSignal(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGINT, onSignal)
    signal.signal(signal.SIGTERM, onSignal)

    stack = LocalStack(args.config, ephemeral=args.ephemeral, echo=True)
    try:
        stack.start()
    except RuntimeError as e:
        sys.stderr.write(f"webstack: {e}\n")
        return 1
    print(
        f"\nwebstack is up: {stack.url('front')}  (landing page)\n"
        f"  try: curl '{stack.url('front', '/async/delay?seconds=2')}'\n"
        f"  front health: {stack.url('front', '/-/readyz')}\n"
        "  Ctrl-C stops every service.\n",
        flush=True,
    )
    while not stopping:
        for name, service in stack.services.items():
            status = service.process.poll()
            if status is not None:
                sys.stderr.write(f"webstack: {name} exited with status {status}\n")
                stopping.append(None)
        time.sleep(0.2)
    statuses = stack.stop()
    print(f"webstack stopped: {statuses}", flush=True)
    return 0 if all(s == 0 for s in statuses.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
