"""
The stock Twisted servers the bench compares with (L{stockproxy},
L{stocksite}), each as its own process: started with this interpreter, its
port read from its first line, the rest of its output drained as the stack's
own log lines are, so that writing its access log never blocks it.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time

from .proctree import stopChild


class PeerProcess:
    """
    C{python -m MODULE ARGS...}, which prints C{listening PORT} first.
    """

    def __init__(self, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.module = module
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env or dict(os.environ),
            start_new_session=True,
        )
        self.port = self._readPort(30.0)
        self.lines = 0
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _readPort(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline and b"\n" not in seen:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        first = seen.split(b"\n", 1)[0].decode("utf-8", "replace")
        if not first.startswith("listening "):
            self.stop()
            raise RuntimeError(f"{self.module} did not start: {seen[-1000:]!r}")
        return int(first.split()[1])

    def _drain(self) -> None:
        out = self.process.stdout
        while True:
            chunk = os.read(out.fileno(), 65536)
            if not chunk:
                return
            self.lines += chunk.count(b"\n")

    def stop(self) -> None:
        stopChild(self.process)
