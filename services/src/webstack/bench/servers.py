"""
Every server of one bench run, started on free loopback ports in front of
one backend, and stopped again (through the caller's L{ExitStack}, so on
errors too):

  - the async service and the front with 1 worker (a L{LocalStack} with
    only the async backend: the other services would only add noise);
  - a second front with 2 workers on the same backend;
  - nginx (when installed), the stock proxy, and two stock Sites (plain,
    and logging as twistd does) for the runtime's own cost.
"""

from __future__ import annotations

import secrets
from contextlib import ExitStack

from webstack.localstack import ROUTES, LocalStack, ServiceProcess, waitReady

from .nginx import Nginx
from .peers import PeerProcess
from .proctree import stopTree

WORKERS_ENV = "WEBSTACK_FRONT_WORKERS"


def stackEnv() -> dict[str, str]:
    """
    What the bench's own stack needs: one front worker, a routing-cookie
    key of its own (the front refuses to start without one when a sticky
    route is configured), and only the async route served.
    """
    env = {WORKERS_ENV: "1", "WEBSTACK_FRONT_ROUTE_KEY": secrets.token_hex(32)}
    for name, routes in ROUTES.items():
        if name != "async":
            for route in routes:
                env[f"WEBSTACK_FRONT_ROUTES_{route.upper()}_UPSTREAM"] = ""
    return env


def startFront(stack: LocalStack, workers: int) -> ServiceProcess:
    """
    One more front on the stack's async backend, with C{workers} workers
    (C{WEBSTACK_FRONT_WORKERS}), on a free port; built as L{LocalStack}
    builds its own front.
    """
    env = stack._env(
        {
            WORKERS_ENV: str(workers),
            "WEBSTACK_FRONT_LISTEN": "tcp:0:interface=127.0.0.1",
            "WEBSTACK_FRONT_ROUTES_ASYNC_UPSTREAM": f"127.0.0.1:{stack.services['async'].port}",
        }
    )
    front = ServiceProcess("front", env, echo=False, label=f"front-{workers}w")
    try:
        port = front.waitListening(30)
        waitReady(f"http://127.0.0.1:{port}/-/readyz", 30)
    except BaseException:
        stopService(front)
        raise
    return front


def stopService(service: ServiceProcess) -> None:
    """
    SIGTERM to the process (it drains and stops its workers), SIGKILL to
    whatever of its tree is left after 20 s.
    """
    stopTree(service.process.pid, grace=20)
    service.wait(5)


def startServers(
    cleanup: ExitStack, nginxPath: str | None, openFiles: int
) -> tuple[ServiceProcess, dict[str, tuple[int, int]], str | None]:
    """
    Start every server; register each one's stop with C{cleanup}.

    @return: the backend's process, each server's C{(port, root pid)} by
        column key, and why nginx is missing if it is.
    """
    stack = LocalStack(ephemeral=True, backends=("async",), env=stackEnv())
    stack.start()
    cleanup.callback(stack.stop)
    backend = stack.services["async"]
    front = stack.services["front"]
    servers = {
        "direct": (backend.port, backend.process.pid),
        "front1": (front.port, front.process.pid),
    }
    front2 = startFront(stack, 2)
    cleanup.callback(stopService, front2)
    servers["front2"] = (front2.port, front2.process.pid)

    nginxMissing = None
    if nginxPath is not None:
        nginx = Nginx(nginxPath, backend.port, openFiles)
        cleanup.callback(nginx.stop)
        try:
            nginx.waitListening()
            servers["nginx"] = (nginx.port, nginx.process.pid)
        except RuntimeError as e:
            nginxMissing = str(e)

    for key, module, args in (
        ("stock_proxy", "webstack.bench.stockproxy", (str(backend.port),)),
        ("stock_site", "webstack.bench.stocksite", ()),
        ("stock_site_logged", "webstack.bench.stocksite", ("--log",)),
    ):
        peer = PeerProcess(module, *args)
        cleanup.callback(peer.stop)
        servers[key] = (peer.port, peer.process.pid)
    return backend, servers, nginxMissing
