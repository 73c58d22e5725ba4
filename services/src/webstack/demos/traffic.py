# -*- test-case-name: tests.test_demos -*-
"""
Load a demo drives itself: a few keep-alive clients sending one request
after another at a steady pace, every answer recorded (when, how long, which
status, which replica), and client aborts sent on purpose.

Threads and C{http.client}, not locust: a demo must run with nothing but the
services' own environment, and needs every single answer, not percentiles.
Every loop is bounded by a stop event, a deadline and a count.
"""

from __future__ import annotations

import http.client
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic time the request was sent
    seconds: float
    status: int  # 0: no answer (the connection failed)
    servedBy: str
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


def percentile(values: list[float], share: float) -> float:
    """
    The C{share} (0..1) percentile of C{values}, nearest rank; 0 for none.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class SteadyLoad:
    """
    C{clients} clients, each sending C{GET path} every C{interval} seconds
    (or as fast as answers come, if slower) until L{stop}, or C{limit}
    seconds after L{start}.
    """

    front: tuple[str, int]
    path: str | Callable[[int], str]
    clients: int = 4
    interval: float = 0.05
    limit: float = 300.0
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> "SteadyLoad":
        deadline = time.monotonic() + self.limit
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index, deadline), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.answers

    def since(self, moment: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.at >= moment]

    def _client(self, index: int, deadline: float) -> None:
        host, port = self.front
        connection = None
        sent = 0
        while not self._stop.is_set() and time.monotonic() < deadline and sent < 1_000_000:
            path = self.path(sent) if callable(self.path) else self.path
            began = time.monotonic()
            sent += 1
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=30)
                connection.request("GET", path, headers=self.headers)
                response = connection.getresponse()
                response.read()
                answer = Answer(
                    began, time.monotonic() - began, response.status,
                    response.getheader("X-Served-By", ""),
                )
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                answer = Answer(began, time.monotonic() - began, 0, "", f"{type(e).__name__}: {e}")
                if connection is not None:
                    connection.close()
                connection = None
            with self._lock:
                self.answers.append(answer)
            rest = self.interval - (time.monotonic() - began)
            if rest > 0:
                self._stop.wait(rest)
        if connection is not None:
            connection.close()


def get(front: tuple[str, int], path: str, headers: dict[str, str] | None = None,
        timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """
    One request on a connection of its own: status, headers (names in lower
    case; a repeated one, like C{Set-Cookie}, its values joined by newlines),
    body.
    """
    connection = http.client.HTTPConnection(*front, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        found: dict[str, str] = {}
        for name, value in response.getheaders():
            name = name.lower()
            found[name] = f"{found[name]}\n{value}" if name in found else value
        return response.status, found, response.read()
    finally:
        connection.close()


def abandon(front: tuple[str, int], paths: list[str], hold: float,
            ready: Callable[[], bool] | None = None, limit: float = 30) -> int:
    """
    Send a request for each of C{paths}, each on its own connection, wait
    until C{ready()} says the backends hold them all (or C{hold} seconds
    without a C{ready}), then close every connection: client aborts.

    @return: how many were sent and abandoned.
    """
    sockets = []
    try:
        for path in paths:
            s = socket.create_connection(front, timeout=10)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n".encode())
            sockets.append(s)
        deadline = time.monotonic() + limit
        if ready is None:
            time.sleep(hold)
        else:
            while not ready():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the backends did not hold all {len(paths)} requests in {limit:g} s")
                time.sleep(0.2)
    finally:
        for s in sockets:
            # An abort (RST) rather than a polite close: what a browser's Esc
            # or a killed client does.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    return len(sockets)


def frontSees(front: tuple[str, int], route: str) -> tuple[int, int]:
    """
    How many replicas of C{route} the front knows, and how many it would
    send a request to now (its landing page, as JSON).
    """
    import json

    status, _, body = get(front, "/", {"Accept": "application/json"})
    if status != 200:
        return 0, 0
    for demo in json.loads(body)["demos"]:
        if demo["route"] == route:
            replicas = demo["replicas"]
            return len(replicas), sum(1 for r in replicas if r["available"])
    return 0, 0


def waitUntilSeen(stack, route: str, replicas: int, limit: float = 60) -> None:
    """
    Wait until the front sends C{route}'s requests to C{replicas} replicas.

    @raise TimeoutError: after C{limit} seconds.
    """
    deadline = time.monotonic() + limit
    while frontSees(stack.front, route) != (replicas, replicas):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the front did not see {replicas} {route} replicas in {limit:g} s")
        time.sleep(0.3)
