"""
Helpers for the tests over real sockets: a recording HTTP upstream, a black
hole that accepts and never answers, a port nobody listens on, a raw client;
and the programs some tests drive (nginx, chromium).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Like any real server (Twisted's included): without it, Nagle holds
        # the body until the head is acknowledged, 40 ms later.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        if self.path == "/readyz":
            self._send(200, b"ready", [("Connection", "close")])
            return
        server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": [(k.lower(), v) for k, v in self.headers.items()],
                "body": body,
            }
        )
        if server.delay:
            time.sleep(server.delay)
        if self.path.endswith("/redirect"):
            self._send(302, b"", [("Location", "/cgi/elsewhere")])
            return
        if self.path.endswith("/private"):
            self._send(401, b"who are you?", [("WWW-Authenticate", 'Basic realm="echo"')])
            return
        payload = json.dumps({"server": server.name, "path": self.path, "length": len(body)})
        self._send(
            200,
            payload.encode(),
            [("Set-Cookie", "first=1; Path=/"), ("Set-Cookie", "second=2; Path=/")],
        )

    def _send(self, status, body, headers):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


class EchoUpstream:
    """
    An HTTP/1.1 upstream on 127.0.0.1 that records every request it gets and
    answers with two Set-Cookie headers, after C{delay} seconds (its
    C{/readyz} at once, so that it passes the front's probes).
    """

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
        self.server.daemon_threads = True
        self.server.name = name
        self.server.delay = delay
        self.server.seen = []
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def seen(self) -> list[dict]:
        return self.server.seen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closedPort() -> int:
    """
    A loopback port that nothing listens on (bound, then released).
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None, headers=None, timeout=10, source=None):
    """
    One request on its own connection; returns (response, body bytes).

    @param source: the loopback address to connect from (any of 127.0.0.0/8),
        for a client the server must tell apart from 127.0.0.1.
    """
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def getJSON(url_port, path):
    response, body = request(url_port, "GET", path, headers={"Accept": "application/json"})
    return json.loads(body)


def waitFor(predicate, timeout=5.0, interval=0.02, what="condition"):
    """
    Poll C{predicate} until it is true; bounded in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")


def rawSend(port, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    return s


def rawGet(port, path: bytes, headers: bytes = b"") -> bytes:
    """
    A GET sent exactly as given (no client normalises the path), and the
    whole answer.
    """
    s = rawSend(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n")
    answer = readAll(s)
    s.close()
    return answer


def dummyRequest(cls, clientHost: str, **headers):
    """
    A request double of class C{cls} (a L{DummyRequest}) from C{clientHost},
    with C{headers} given as keywords (C{x_forwarded_for=b"..."}).
    """
    from twisted.internet.address import IPv4Address

    request = cls([b""])
    request.client = IPv4Address("TCP", clientHost, 4444)
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name.replace("_", "-").encode(), [value])
    return request


def readAll(s: socket.socket, timeout=10) -> bytes:
    s.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def digestAuthorization(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """
    The Authorization header answering a Digest challenge (RFC 2617, qop=auth).
    """
    import hashlib
    import re

    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    ha1 = md5(f"{user}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{uri}")
    nc, cnonce = "00000001", "0a4f113b"
    response = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}",'
        f' uri="{uri}", algorithm=MD5, response="{response}", opaque="{params["opaque"]}",'
        f' qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


def onePiece(answer: bytes) -> tuple[bytes, bytes]:
    """
    Check that a whole HTTP/1.1 answer (as L{rawGet} returns it) gives its
    body with a C{Content-Length} that measures it, not chunked; return its
    head (lower-cased) and body.
    """
    head, _, body = answer.partition(b"\r\n\r\n")
    head = head.lower()
    assert b"\r\ntransfer-encoding:" not in head, head
    lengths = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.startswith(b"content-length:")]
    assert lengths == [b"%d" % len(body)], head
    return head, body


def requiredTool(name: str, package: str) -> str:
    """
    The path of program C{name}, installed from Debian's C{package} with
    apt-get if missing and we may (root, apt-get present), as C{make bench}
    does.  Only a machine where it cannot be installed skips the test; one
    where the install was possible and failed fails it.
    """
    import pytest

    from webstack.bench.tools import ensureTool

    found, said = ensureTool(name, package)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(said)
    pytest.skip(said)


# What every deployment of the stack must answer (the containers, the swarm).


def checkEveryDemoAnswers(port: int) -> None:
    """
    One request to each demo through a deployed front: each answers as its
    service does.
    """
    response, body = request(port, "GET", "/async/delay?seconds=0")
    assert response.status == 200 and b"Sorry to keep you waiting." in body
    response, body = request(port, "GET", "/static/")
    assert response.status == 200 and b"Static files" in body
    response, body = request(port, "GET", "/static/large.txt", headers={"Range": "bytes=0-99"})
    assert response.status == 206 and len(body) == 100
    response, body = request(port, "GET", "/rpy/delay.rpy")
    assert response.status == 200
    response, body = request(port, "GET", "/wsgi/hello")
    assert body == b"Hello, world!"
    response, body = request(port, "GET", "/cgi/date-example.sh")
    assert response.status == 200 and response.headers["Content-Type"] == "text/plain"
    response, body = request(port, "GET", "/cgi/date-filtered.sh")
    assert body.startswith(b"run by a FilteredScript")


def checkAuthAndSessions(port: int) -> None:
    """
    Through a deployed front: Basic and Digest with the users the auth
    service reads from its files, and a session that keeps its count.
    """
    import base64

    response, _ = request(port, "GET", "/auth/")
    assert response.status == 401
    basic = base64.b64encode(b"alice:wonderland-2026").decode()
    response, body = request(port, "GET", "/auth/", headers={"Authorization": f"Basic {basic}"})
    assert response.status == 200 and b"alice's public_html" in body
    challenge = request(port, "GET", "/auth/")[0].headers.get_all("WWW-Authenticate")[1]
    header = digestAuthorization(challenge, "bob", "builder-2026", "GET", "/auth/")
    response, body = request(port, "GET", "/auth/", headers={"Authorization": header})
    assert response.status == 200 and b"bob's public_html" in body

    response, body = request(port, "GET", "/session/counter")
    cookies = response.headers.get_all("Set-Cookie")
    [session] = [c for c in cookies if c.startswith("TWISTED_SESSION")]
    assert "HttpOnly" in session and "SameSite=Lax" in session
    # The routing cookie too, where the front sets one.
    jar = "; ".join(c.split(";")[0] for c in cookies)
    response, body = request(port, "GET", "/session/counter", headers={"Cookie": jar})
    assert body == b"Visit #2 for you!"


def checkAbortCancelsTheBackendWork(port: int) -> None:
    """
    Through a deployed front: a client that leaves a request to
    C{/async/interruptible} has its delayed call cancelled at the backend.
    """

    def interruptible():
        return getJSON(port, "/async/stats")["endpoints"]["interruptible"]

    before = interruptible()
    s = rawSend(
        port,
        b"GET /async/interruptible?seconds=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    waitFor(lambda: interruptible()["in_flight"] == 1, what="backend started")
    s.close()
    waitFor(
        lambda: interruptible()["cancelled"] == before["cancelled"] + 1,
        what="backend cancelled",
    )
    assert interruptible()["in_flight"] == 0
