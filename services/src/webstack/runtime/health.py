# -*- test-case-name: tests.test_channel -*-
"""
C{/healthz} (the process is alive and its reactor turns) and C{/readyz} (it
should be sent traffic: not draining, and every check the service registered
passes).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.web.resource import Resource

Check = Callable[[], tuple[bool, str]]


class Health:
    """
    The readiness of one service: a draining flag plus named checks, each a
    callable returning C{(ok, detail)}.
    """

    def __init__(self) -> None:
        self.draining = False
        self._checks: dict[str, Check] = {}

    def addCheck(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def readiness(self) -> tuple[bool, dict[str, object]]:
        report: dict[str, object] = {}
        ready = not self.draining
        if self.draining:
            report["draining"] = "stopping: no new work accepted"
        for name, check in self._checks.items():
            ok, detail = check()
            ready = ready and ok
            report[name] = {"ok": ok, "detail": detail}
        return ready, report


def _json(request, status: int, document: dict[str, object]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document).encode("utf-8") + b"\n"


class LivenessResource(Resource):
    isLeaf = True

    def render_GET(self, request):
        return _json(request, 200, {"status": "alive"})


class ReadinessResource(Resource):
    isLeaf = True

    def __init__(self, health: Health) -> None:
        super().__init__()
        self._health = health

    def render_GET(self, request):
        ready, report = self._health.readiness()
        return _json(
            request,
            200 if ready else 503,
            {"status": "ready" if ready else "not ready", "checks": report},
        )
