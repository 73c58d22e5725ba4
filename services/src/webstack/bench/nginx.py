"""
nginx in front of the same backend, as the reference a Python proxy is
measured against: one worker process (the front's first column has one
process too), keep-alive to the upstream, and otherwise nginx's defaults,
access log included (the front writes one line per request as well).

Aborts: with C{proxy_ignore_client_abort off} (the default, written out here
so nobody wonders) nginx closes the upstream connection when its client
leaves before the answer, so the backend sees the same cancellation as
through the front; the abort figures come from the backend's own log.

Everything nginx writes (pid, logs, temporary files) stays in a temporary
directory; it runs in the foreground (C{daemon off}) as our child, so its
master is the root of the process tree the bench measures.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .proctree import stopChild

UPSTREAM_KEEPALIVE = 64
LISTEN_BACKLOG = 1024
"""
The front's own backlog (C{runtime.backlog} in config/stack.toml): the
bursts of the lateness runs meet the same listen queue at both.
"""


def nginxConfig(
    directory: str,
    port: int,
    upstreamPort: int,
    openFiles: int = 20000,
    user: str | None = None,
) -> str:
    """
    The text of nginx.conf for one run.

    @param directory: where nginx keeps its pid, logs and temporary files.
    @param user: C{"name group"} for the C{user} directive (only used when
        nginx starts as root; the bench's own user, so the worker can write
        in C{directory}).
    """
    d = directory.rstrip("/")
    userLine = f"user {user};\n" if user else ""
    connections = max(1024, openFiles - 100)
    return f"""\
# Written by webstack.bench for one run; nothing here outlives it.
{userLine}worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {openFiles};

events {{
    worker_connections {connections};
}}

http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    upstream backend {{
        server 127.0.0.1:{upstreamPort};
        keepalive {UPSTREAM_KEEPALIVE};
    }}

    server {{
        listen 127.0.0.1:{port} backlog={LISTEN_BACKLOG};

        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ignore_client_abort off;
            proxy_read_timeout 75s;
        }}
    }}
}}
"""


def freePort() -> int:
    """
    A loopback port free right now (nginx cannot listen on port 0 and tell
    us which one it got).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ownUser() -> str:
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


class Nginx:
    """
    One nginx (master and one worker) on a free loopback port.

    @ivar port: where it listens.
    @ivar process: its master process.
    """

    def __init__(self, executable: str, upstreamPort: int, openFiles: int) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="webstack-bench-nginx-")
        self.directory = self._directory.name
        self.port = freePort()
        conf = Path(self.directory, "nginx.conf")
        conf.write_text(
            nginxConfig(self.directory, self.port, upstreamPort, openFiles,
                        ownUser() if os.geteuid() == 0 else None)
        )
        self.process = subprocess.Popen(
            [executable, "-p", self.directory + "/", "-c", str(conf),
             "-e", f"{self.directory}/error.log"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def waitListening(self, timeout: float = 10.0) -> None:
        """
        Return once nginx accepts connections; raise L{RuntimeError} with
        its error log if it exits or does not in time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {self.errors()}")

    def errors(self) -> str:
        try:
            return Path(self.directory, "error.log").read_text()[-1000:].strip()
        except OSError:
            return "(no error log)"

    def stop(self) -> None:
        """
        Fast shutdown (SIGTERM) of the master and its worker, then remove
        the temporary directory.
        """
        try:
            stopChild(self.process)
        finally:
            self._directory.cleanup()
