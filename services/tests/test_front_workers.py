"""
The front with several workers, as users see it: one coherent landing page
whichever worker answers, and sessions that stay on their replica from any
worker and across a restart of the front (the routing cookie is signed with
a shared key, not remembered in one process's memory).
"""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from webstack.localstack import LocalStack

pytestmark = pytest.mark.integration

TWO_WORKERS = {"WEBSTACK_FRONT_WORKERS": "2"}


def get(port: int, path: str, cookies: dict[str, str] | None = None):
    """
    One request on a connection of its own (so either worker may take it).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Accept": "application/json"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def frontWorker(response) -> str:
    [value] = [v for v in response.headers.get_all("X-Worker") or [] if v.startswith("front/")]
    return value.split("/")[1]


def keep(cookies: dict[str, str], response) -> None:
    for setCookie in response.headers.get_all("Set-Cookie") or ():
        name, _, value = setCookie.split(";")[0].partition("=")
        cookies[name.strip()] = value.strip()


def test_theLandingPageShowsEveryWorkersRequests():
    with LocalStack(ephemeral=True, backends=("async",), env=TWO_WORKERS) as stack:
        port = stack.services["front"].port
        held = []
        try:
            for _ in range(6):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"GET /async/delay?seconds=8 HTTP/1.1\r\nHost: t\r\n\r\n")
                held.append(s)
            workers, counts = set(), set()
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and (len(workers) < 2 or counts != {6}):
                response, body = get(port, "/")
                workers.add(frontWorker(response))
                [demo] = [d for d in json.loads(body)["demos"] if d["route"] == "async"]
                counts.add(sum(r["in_flight"] for r in demo["replicas"]))
                if counts != {6}:
                    counts.clear()  # the workers publish every second
                    time.sleep(0.2)
            assert len(workers) == 2, "only one worker ever answered"
            assert counts == {6}
        finally:
            for s in held:
                s.close()


def test_aSessionStaysOnItsReplicaWhicheverWorkerAnswers():
    with LocalStack(
        ephemeral=True, backends=("session",), replicas={"session": 2}, env=TWO_WORKERS
    ) as stack:
        port = stack.services["front"].port
        cookies: dict[str, str] = {}
        workers = set()
        # Which worker accepts a connection is the kernel's choice: ask
        # until both have answered (each on a new connection).
        for visit in range(1, 300):
            response, body = get(port, "/session/counter", cookies)
            assert body == b"Visit #%d for you!" % visit
            workers.add(frontWorker(response))
            keep(cookies, response)
            if len(workers) == 2 and visit >= 6:
                break
        assert len(workers) == 2, "only one worker ever answered"
        assert "WEBSTACK_ROUTE" in cookies


def test_aSessionStaysOnItsReplicaAcrossAFrontRestart():
    with LocalStack(ephemeral=True, backends=("session",), replicas={"session": 2}) as stack:
        cookies: dict[str, str] = {}
        for visit in (1, 2, 3):
            response, body = get(stack.services["front"].port, "/session/counter", cookies)
            assert body == b"Visit #%d for you!" % visit
            keep(cookies, response)
        assert stack.restartFront() == 0
        for visit in (4, 5, 6):
            response, body = get(stack.services["front"].port, "/session/counter", cookies)
            assert body == b"Visit #%d for you!" % visit
            keep(cookies, response)


def test_aForgedRoutingCookieFallsBackToBalancing():
    with LocalStack(ephemeral=True, backends=("session",), replicas={"session": 2}) as stack:
        port = stack.services["front"].port
        response, body = get(port, "/session/counter", {"WEBSTACK_ROUTE": "A" * 22})
        assert response.status == 200 and body == b"Visit #1 for you!"
        assert "WEBSTACK_ROUTE=" in " ".join(response.headers.get_all("Set-Cookie"))
