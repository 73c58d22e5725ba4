"""
Issue 9's attacks on the runtime and the front, each over real sockets
against real processes (the rows of other services are in their own test
files): made-up methods, bodies nobody reads, headers that forge the client,
a client that never reads, too many connections.  Each failed on the code
before its fix.
"""

from __future__ import annotations

import os
import re
import socket
import time

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from webstack.localstack import LocalStack
from webstack.runtime.metrics import HTTPMetrics, methodLabel
from webstack.runtime.site import RouteLabeler, WebSite

from .support import EchoUpstream, rawSend, readAll, request, waitFor

integration = pytest.mark.integration


def metricValue(text: str, name: str, **labels) -> float:
    """
    The value of one sample of C{name} in a Prometheus exposition (0 if
    absent).
    """
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        sampleName, _, rest = sample.partition("{")
        if sampleName != name:
            continue
        found = ",".join(sorted(filter(None, rest.rstrip("}").split(","))))
        if found == wanted:
            return float(value)
    return 0.0


def scrape(port: int, path: str) -> str:
    _, body = request(port, "GET", path)
    return body.decode()


@pytest.fixture(scope="module")
def stack():
    echo = EchoUpstream("echo")
    env = {
        # /cgi/ is a recording upstream: what the front passes on.
        "WEBSTACK_FRONT_ROUTES_CGI_UPSTREAM": f"127.0.0.1:{echo.port}",
        "WEBSTACK_FRONT_WORKERS": "1",
        "WEBSTACK_FRONT_HEALTH_INTERVAL": "3600",
    }
    with LocalStack(ephemeral=True, env=env, backends=("async",)) as running:
        yield {
            "front": running.services["front"].port,
            "async": running.services["async"].port,
            "echo": echo,
        }
    echo.close()


# Attack 1: a label per made-up method.


@integration
def test_madeUpMethodsShareOneMetricLabel(stack):
    before = len(scrape(stack["async"], "/metrics"))
    for index in range(60):
        answer = rawSend(
            stack["front"],
            b"M%dX /async/delay?seconds=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            % index,
        )
        readAll(answer)
        answer.close()
    for port, path in ((stack["front"], "/-/metrics"), (stack["async"], "/metrics")):
        text = scrape(port, path)
        assert not re.search(r'method="M\d+X"', text), path
        assert 'method="other"' in text, path
    # One more label set, not sixty.
    assert len(scrape(stack["async"], "/metrics")) < before + 4000


def test_methodLabelsAreAFixedSet():
    assert methodLabel("GET") == "GET"
    assert methodLabel("PATCH") == "PATCH"
    assert methodLabel("get") == "other"
    assert methodLabel("PROPFIND") == "other"


# TRACE, and any method a resource cannot render: 405, never 501.


@integration
def test_traceIs405AtTheFrontAndNeverForwarded(stack):
    seen = len(stack["echo"].seen)
    response, body = request(stack["front"], "TRACE", "/cgi/anything")
    assert response.status == 405
    assert "GET" in response.getheader("allow")
    assert len(stack["echo"].seen) == seen


@integration
@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "BREW", "PUT"])
def test_aMethodNoResourceRendersIs405WithAllow(stack, method):
    for port in (stack["async"], stack["front"]):
        if port == stack["front"] and method == "TRACE":
            continue
        response, body = request(port, method, "/async/delay?seconds=0")
        assert response.status == 405, (port, method)
        assert response.getheader("allow"), (port, method)
        assert b"Traceback" not in body


# Attack 5: bodies parsed, or read, that nobody uses.


class _Args(Resource):
    isLeaf = True

    def render_POST(self, request):
        return repr((request.args, request.content.read())).encode()


def test_noFormIsParsedForAResourceThatDoesNotAskForIt():
    site = WebSite(
        _Args(),
        reactor=Clock(),
        metrics=HTTPMetrics(CollectorRegistry()),
        routeLabeler=RouteLabeler(["/"]),
    )
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    channel.makeConnection(transport)
    body = b"a=1&b=2"
    channel.dataReceived(
        b"POST /form HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(repr(({}, body)).encode())


@integration
def test_aLargeFormToNoRouteIsRefusedBeforeItIsRead(stack):
    body = b"a=1&" * (9 * 1024 * 1024 // 4)
    s = rawSend(
        stack["front"],
        b"POST /nowhere HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body),
    )
    answer = readAll(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]


@integration
def test_aRouteTakesNoLargerBodyThanItsService(stack):
    # The async service takes at most [runtime] max_body_bytes (1 MiB): the
    # front refuses more itself, from the Content-Length, without reading it.
    refused = metricValue(
        scrape(stack["async"], "/metrics"), "http_requests_refused_total", reason="body_too_large"
    )
    s = rawSend(
        stack["front"],
        b"POST /async/delay?seconds=0 HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n" % (2 * 1024 * 1024),
    )
    answer = readAll(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert b"larger than 1048576 bytes" in answer
    assert (
        metricValue(
            scrape(stack["async"], "/metrics"),
            "http_requests_refused_total",
            reason="body_too_large",
        )
        == refused
    )
    # A body within the limit still goes through.
    response, _ = request(stack["front"], "POST", "/cgi/upload", body=b"x" * 500_000)
    assert response.status == 200


# Attack 8: headers that forge the client.


@integration
def test_theClientCannotForgeWhatTheFrontSays(stack):
    s = rawSend(
        stack["front"],
        b"GET /cgi/environ HTTP/1.1\r\nHost: x\r\n"
        b"X-Forwarded-For: a\r\n"
        b"X_Forwarded_For: 6.6.6.6\r\n"
        b"x_forwarded_proto: https\r\n"
        b"X-Real-IP: 6.6.6.6\r\n"
        b"X_Real_IP: 6.6.6.6\r\n"
        b"Forwarded: for=6.6.6.6\r\n"
        b"X-Request-Id: chosen-by-client\r\n"
        b"X_Request_Id: other\r\n"
        b"Connection: X-Request-Id, X-Forwarded-For, close\r\n\r\n",
    )
    answer = readAll(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200")
    headers = stack["echo"].seen[-1]["headers"]
    names = [name for name, _ in headers]
    assert not [n for n in names if "_" in n]
    assert "forwarded" not in names
    assert "x-real-ip" not in names
    assert dict(headers)["x-forwarded-for"] == "127.0.0.1"
    assert dict(headers)["x-forwarded-proto"] == "http"
    assert dict(headers)["x-request-id"] == "chosen-by-client"
    assert "6.6.6.6" not in repr(headers)


# Attack 10: a client that never reads, and too many connections.


@pytest.fixture(scope="module")
def bigFile(tmp_path_factory):
    root = tmp_path_factory.mktemp("static-root")
    with open(root / "big.bin", "wb") as f:
        f.truncate(64 * 1024 * 1024)
    return root


def _openFiles(pid: int, name: str) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name):
                count += 1
        except OSError:
            pass
    return count


@integration
def test_aClientThatNeverReadsIsCutOffAndReleasesTheFile(bigFile):
    env = {
        "WEBSTACK_STATIC_ROOT": str(bigFile),
        "WEBSTACK_RUNTIME_WRITE_TIMEOUT": "1",
        "WEBSTACK_FRONT_WORKERS": "1",
        "WEBSTACK_FRONT_HEALTH_INTERVAL": "3600",
    }
    with LocalStack(ephemeral=True, env=env, backends=("static",)) as running:
        front = running.services["front"].port
        static = running.services["static"].process.pid
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", front))
        client.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            waitFor(lambda: _openFiles(static, "big.bin") == 1, timeout=10, what="file open")
            waitFor(
                lambda: metricValue(scrape(front, "/-/metrics"), "http_write_timeouts_total") >= 1,
                timeout=15,
                what="the front's write timeout",
            )
            waitFor(
                lambda: _openFiles(static, "big.bin") == 0, timeout=15, what="file released"
            )
            text = scrape(front, "/-/metrics")
            assert metricValue(text, "http_requests_in_flight") <= 1  # this scrape
        finally:
            client.close()
        for service in ("front", "static"):
            assert not [line for line in running.services[service].lines if "Traceback" in line]


@integration
def test_connectionsPastTheLimitAreClosedAndCounted():
    env = {
        "WEBSTACK_FRONT_MAX_CONNECTIONS": "4",
        "WEBSTACK_FRONT_WORKERS": "1",
        "WEBSTACK_FRONT_HEALTH_INTERVAL": "3600",
    }
    with LocalStack(ephemeral=True, env=env, backends=("async",)) as running:
        front = running.services["front"].port
        held = []
        try:
            for _ in range(4):
                s = socket.create_connection(("127.0.0.1", front), timeout=5)
                # A request answered proves the connection was taken.
                s.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(65536).startswith(b"HTTP/1.1 200")
                held.append(s)
            extra = socket.create_connection(("127.0.0.1", front), timeout=5)
            try:
                extra.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
            try:
                assert extra.recv(65536) == b""
            except ConnectionResetError:
                pass
            extra.close()
            # The count is read over a connection the front holds already: a
            # new one, made just after the held ones close, could reach the
            # front before it sees them close, and be refused (and counted).
            # The front counted the refusal before closing the extra one.
            scraper = held.pop()
            scraper.sendall(b"GET /-/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, body = readAll(scraper).partition(b"\r\n\r\n")
            scraper.close()
            assert head.startswith(b"HTTP/1.1 200")
            assert metricValue(body.decode(), "http_connections_refused_total") == 1
        finally:
            for s in held:
                s.close()
