"""
The front over real loopback sockets: the real async service and real twistd
processes, recording upstreams, real client aborts.

Every wait is a bounded poll; nothing sleeps to let time pass except the
slowloris client, which must be slow to be one.
"""

import json
import socket
import time

import pytest

from webstack.localstack import LocalStack

from .support import (
    EchoUpstream,
    closedPort,
    getJSON,
    rawGet,
    rawSend,
    readAll,
    request,
    waitFor,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world():
    echo = EchoUpstream("echo-1")
    echo2 = EchoUpstream("echo-2")
    doomed = EchoUpstream("doomed")
    slow = EchoUpstream("slow", delay=3.0)
    dead = closedPort()
    env = {
        # /cgi/: one recording upstream (headers, bodies, cookies).
        "WEBSTACK_FRONT_ROUTES_CGI_UPSTREAM": f"127.0.0.1:{echo.port}",
        # /auth/: two replicas to balance over.
        "WEBSTACK_FRONT_ROUTES_AUTH_UPSTREAM": f"127.0.0.1:{echo.port},127.0.0.1:{echo2.port}",
        # /session/: two replicas, one of which dies after start-up.
        "WEBSTACK_FRONT_ROUTES_SESSION_UPSTREAM": f"127.0.0.1:{echo2.port},127.0.0.1:{doomed.port}",
        # /wsgi/: nothing listens.
        "WEBSTACK_FRONT_ROUTES_WSGI_UPSTREAM": f"127.0.0.1:{dead}",
        # /static/: ready, but answers requests after 3 s.
        "WEBSTACK_FRONT_ROUTES_STATIC_UPSTREAM": f"127.0.0.1:{slow.port}",
        "WEBSTACK_FRONT_ROUTES_STATIC_TIMEOUT": "0.5",
        "WEBSTACK_FRONT_HEAD_TIMEOUT": "1",
        "WEBSTACK_FRONT_ROUTES_CGI_MAX_BODY_BYTES": "65536",
        "WEBSTACK_FRONT_EJECT_SECONDS": "60",
        # One probe round, at start-up: no probe races the tests below.
        "WEBSTACK_FRONT_HEALTH_INTERVAL": "3600",
    }
    # Only the async service: the other routes go to the upstreams above.
    stack = LocalStack(ephemeral=True, env=env, backends=("async",)).start()
    front = stack.services["front"].port
    backend = stack.services["async"].port
    try:
        yield {
            "stack": stack,
            "front": front,
            "async": backend,
            "echo": echo,
            "echo2": echo2,
            "doomed": doomed,
        }
    finally:
        stack.stop()
        for upstream in (echo, echo2, slow):
            upstream.close()


def asyncStats(world):
    return getJSON(world["async"], "/async/stats")


def metric(port, path, name, **labels):
    _, body = request(port, "GET", path)
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in body.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def openDelayed(port, path, requestId):
    """
    Start a request on a raw socket (the client closes it after reading).
    """
    return rawSend(
        port,
        f"GET {path} HTTP/1.1\r\nHost: front.test\r\nX-Request-Id: {requestId}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )


# Cancellation end to end.


def test_aClientAbortCancelsTheBackendWork(world):
    """
    Seed 000 through the front: the client leaves after the backend started
    the work; the backend's cancelled counter rises, nothing stays in
    flight, and the backend saw its own connection close (its access log
    records the request as aborted).
    """
    before = asyncStats(world)["endpoints"]["interruptible"]
    s = openDelayed(world["front"], "/async/interruptible?seconds=5", "abort-test-1")
    waitFor(
        lambda: asyncStats(world)["endpoints"]["interruptible"]["in_flight"] == 1,
        what="backend started the work",
    )
    s.close()
    aborted = time.monotonic()
    after = waitFor(
        lambda: (
            (c := asyncStats(world)["endpoints"]["interruptible"])["cancelled"]
            == before["cancelled"] + 1
            and c
        ),
        what="backend cancelled",
    )
    assert time.monotonic() - aborted < 2.0
    assert after["in_flight"] == 0
    assert after["completed"] == before["completed"]
    # A busy service holds its info lines up to 50 ms (runtime.logs).
    [record] = waitFor(
        lambda: [
            r
            for r in world["stack"].services["async"].events("access")
            if r["request_id"] == "abort-test-1"
        ],
        timeout=5,
        what="the backend's access line",
    )
    assert record["outcome"] == "aborted" and record["status"] == 499


def test_aClientAbortDuringTheBodyStopsTheStream(world):
    before = asyncStats(world)["endpoints"]["stream"]
    s = openDelayed(world["front"], "/async/stream?chunks=100&interval=0.2", "abort-test-2")
    s.settimeout(5)
    assert b"chunk 1 of 100" in s.recv(4096)
    s.close()
    after = waitFor(
        lambda: (
            (c := asyncStats(world)["endpoints"]["stream"])["cancelled"]
            == before["cancelled"] + 1
            and c
        ),
        what="stream cancelled",
    )
    assert after["in_flight"] == 0


def test_theLoggedSeedLogsTheInterruptionWithTheRequestId(world):
    s = openDelayed(world["front"], "/async/logged?seconds=5", "abort-test-3")
    waitFor(
        lambda: asyncStats(world)["endpoints"]["logged"]["in_flight"] == 1,
        what="backend started the work",
    )
    s.close()
    service = world["stack"].services["async"]
    [event] = waitFor(
        lambda: [e for e in service.events("interrupted") if e["request_id"] == "abort-test-3"],
        what="interruption logged",
    )
    assert event["msg"] == "Async response demo interrupted response"
    assert event["level"] == "warn"
    assert "ConnectionDone" in event["error"] or "ConnectionLost" in event["error"]


def test_theFrontCountsTheCancellation(world):
    s = openDelayed(world["front"], "/async/interruptible?seconds=5", "abort-test-4")
    waitFor(lambda: asyncStats(world)["endpoints"]["interruptible"]["in_flight"] == 1)
    s.close()
    waitFor(
        lambda: metric(
            world["front"],
            "/-/metrics",
            "front_upstream_exchanges_total",
            route="async",
            outcome="client_gone_before_response",
        )
        >= 1,
        what="front counted the cancellation",
    )


# Delayed responses and streaming through the front.


def test_aDelayedResponseArrivesWhole(world):
    start = time.monotonic()
    response, body = request(world["front"], "GET", "/async/deferred?seconds=0.3")
    assert response.status == 200
    assert body == b"<html><body>Sorry to keep you waiting.</body></html>"
    assert time.monotonic() - start >= 0.3


def test_streamedChunksArriveAsTheyAreWritten(world):
    """
    The front streams: the first chunk reaches the client long before the
    last one is written upstream.
    """
    s = openDelayed(world["front"], "/async/stream?chunks=3&interval=1", "stream-1")
    s.settimeout(5)
    start = time.monotonic()
    first = s.recv(4096)
    assert b"chunk 1 of 3" in first
    assert time.monotonic() - start < 0.9
    rest = readAll(s)
    assert b"chunk 3 of 3" in first + rest


def test_badSecondsThroughTheFrontIs400(world):
    response, body = request(
        world["front"], "GET", "/async/delay?seconds=-1", headers={"Accept": "application/json"}
    )
    assert response.status == 400
    assert "seconds must be a number from 0 to 60" in json.loads(body)["detail"]


# Headers.


def test_forwardedHeadersAreSetAndSpoofedOnesReplaced(world):
    echo = world["echo"]
    response, _ = request(
        world["front"],
        "GET",
        "/cgi/headers",
        headers={"Host": "demo.example:8080", "X-Forwarded-For": "6.6.6.6"},
    )
    assert response.status == 200
    headers = dict(echo.seen[-1]["headers"])
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "demo.example:8080"
    assert headers["host"] == "demo.example:8080"
    assert headers["x-request-id"]


def test_hopByHopHeadersAreDropped(world):
    echo = world["echo"]
    request(
        world["front"],
        "GET",
        "/cgi/hop",
        headers={
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eA==",
            "X-Keep-Me": "yes",
        },
    )
    names = {name for name, _ in echo.seen[-1]["headers"]}
    assert "x-keep-me" in names
    assert not names & {"x-drop-me", "keep-alive", "te", "proxy-authorization"}


def test_twoSetCookieHeadersSurvive(world):
    response, _ = request(world["front"], "GET", "/cgi/cookies")
    assert response.headers.get_all("Set-Cookie") == ["first=1; Path=/", "second=2; Path=/"]


def test_redirectsAndChallengesPassUnchanged(world):
    response, _ = request(world["front"], "GET", "/cgi/redirect")
    assert response.status == 302
    assert response.headers["Location"] == "/cgi/elsewhere"
    response, body = request(world["front"], "GET", "/cgi/private")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="echo"'
    assert body == b"who are you?"


# Bodies and limits.


def test_aPostedBodyArrivesIntact(world):
    body = bytes(range(256)) * 100
    response, answer = request(world["front"], "POST", "/cgi/upload", body=body)
    assert response.status == 200
    seen = world["echo"].seen[-1]
    assert seen["body"] == body
    assert dict(seen["headers"])["content-length"] == str(len(body))


def test_aChunkedUploadArrivesIntact(world):
    """
    The front reads the chunked body and forwards it with its length: the
    upstream gets every byte and no Transfer-Encoding.
    """
    parts = [b"x" * 1000, b"y" * 5000, b"z" * 3]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    s = rawSend(
        world["front"],
        b"POST /cgi/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + chunked,
    )
    answer = readAll(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200")
    seen = world["echo"].seen[-1]
    assert seen["body"] == b"".join(parts)
    headers = dict(seen["headers"])
    assert "transfer-encoding" not in headers
    assert headers["content-length"] == "6003"


def test_anOversizedBodyGets413(world):
    response, body = request(world["front"], "POST", "/cgi/upload", body=b"a" * 70000)
    assert response.status == 413
    assert b"larger than 65536 bytes" in body


def test_anOversizedChunkedBodyGets413(world):
    chunk = b"a" * 30000
    s = rawSend(
        world["front"],
        b"POST /cgi/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 3
        + b"0\r\n\r\n",
    )
    answer = readAll(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413")


def test_anOversizedHeaderGets431(world):
    response, body = request(world["front"], "GET", "/cgi/x", headers={"X-Big": "a" * 20000})
    assert response.status == 431


def test_aSlowlorisClientIsClosedAfterTheHeadTimeout(world):
    """
    One byte every 0.2 s: the idle timeout never fires, the head deadline
    (1 s here) does.
    """
    s = rawSend(world["front"], b"GET /async/delay HTTP/1.1\r\n")
    start = time.monotonic()
    answer = b""
    s.settimeout(0.2)
    for _ in range(50):  # bounded: at most 10 s
        try:
            s.sendall(b"X")
            answer += s.recv(4096)
            if answer:
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    elapsed = time.monotonic() - start
    s.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert 0.9 <= elapsed < 3.0


# Upstream failures.


def test_aDeadUpstreamGets502AtOnce(world):
    """
    Nothing listens: the start-up probe found it so, and every request is
    answered 502 at once, saying so.
    """
    for _ in range(3):
        start = time.monotonic()
        response, body = request(
            world["front"], "GET", "/wsgi/x", headers={"Accept": "application/json"}
        )
        assert response.status == 502
        assert json.loads(body)["detail"] == (
            "No replica of the wsgi service is available (1 known, all failing)."
        )
        assert time.monotonic() - start < 0.5


def test_aSlowUpstreamGets504AtTheRouteTimeout(world):
    start = time.monotonic()
    response, body = request(world["front"], "GET", "/static/x")
    elapsed = time.monotonic() - start
    assert response.status == 504
    assert b"did not answer in time" in body
    assert b"<html" in body
    assert 0.5 <= elapsed < 2.0


def test_replicasAreBalanced(world):
    echo, echo2 = world["echo"], world["echo2"]
    before = (len(echo.seen), len(echo2.seen))
    for i in range(20):
        response, body = request(world["front"], "GET", f"/auth/balance/{i}")
        assert response.status == 200
    served = (len(echo.seen) - before[0], len(echo2.seen) - before[1])
    assert sum(served) == 20
    assert min(served) >= 5


def test_aReplicaThatRefusesIsEjectedAndItsRequestsRetried(world):
    """
    A replica that was up at start-up dies: requests that pick it are
    retried on the other replica, so clients see no error, and it is then
    left out.
    """
    front, doomed = world["front"], world["doomed"]
    waitFor(
        lambda: any(
            r["probe"] == "ok" and r["address"].endswith(f":{doomed.port}")
            for d in getJSON(front, "/")["demos"]
            if d["route"] == "session"
            for r in d["replicas"]
        ),
        what="doomed replica probed",
    )
    doomed.close()
    for i in range(10):
        response, body = request(front, "GET", f"/session/{i}")
        assert response.status == 200
        assert json.loads(body)["server"] == "echo-2"
    assert metric(front, "/-/metrics", "front_upstream_retries_total", route="session") >= 1
    [demo] = [d for d in getJSON(front, "/")["demos"] if d["route"] == "session"]
    [gone] = [r for r in demo["replicas"] if r["address"].endswith(f":{doomed.port}")]
    assert gone["available"] is False


# The front's own pages.


def test_theLandingPageListsEveryDemoWithItsSeedAndHealth(world):
    response, body = request(world["front"], "GET", "/")
    assert response.status == 200
    page = body.decode()
    for prefix in ("/async/", "/static/", "/wsgi/", "/cgi/", "/auth/", "/session/"):
        assert prefix in page
    assert "seed" in page and "001 asynchronous responses" in page
    demos = {d["route"]: d for d in getJSON(world["front"], "/")["demos"]}
    assert demos["async"]["state"] == "ok"
    assert demos["wsgi"]["state"] == "bad"


def test_theFrontHasItsOwnHealthAndMetrics(world):
    response, body = request(world["front"], "GET", "/-/healthz")
    assert response.status == 200
    response, body = request(world["front"], "GET", "/-/readyz")
    assert response.status == 200 and json.loads(body)["status"] == "ready"
    response, body = request(world["front"], "GET", "/-/metrics")
    assert b"http_requests_total" in body and b"front_replicas" in body


@pytest.mark.parametrize(
    "path",
    ["/async/../cgi/x", "/async/%2e%2e/cgi/x", "/async/%252e%252e/x", "/async/a%5cb", "/async/%00"],
)
def test_dotSegmentsNeverReachAService(world, path):
    seen = len(world["echo"].seen)
    response, _ = request(world["front"], "GET", path)
    assert response.status == 400
    assert len(world["echo"].seen) == seen


def test_anUnknownPathIs404(world):
    response, _ = request(world["front"], "GET", "/nothing-here")
    assert response.status == 404


# Stopping.


def test_sigtermDrainsRequestsInProgressThenExitsZero():
    """
    SIGTERM to the async service while a delayed request is in flight
    through the front: the request still completes, new connections are
    refused at once, and the process exits 0.  Then the front answers 502
    for the route, and stops cleanly too.
    """
    with LocalStack(ephemeral=True) as stack:
        front = stack.services["front"].port
        backend = stack.services["async"]
        s = openDelayed(front, "/async/delay?seconds=1", "drain-1")
        waitFor(lambda: getJSON(backend.port, "/async/stats")["endpoints"]["delay"]["in_flight"] == 1)
        backend.terminate()
        waitFor(
            lambda: any(e.get("event") == "draining" for e in backend.events()),
            what="draining",
        )
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", backend.port), timeout=2).close()
        answer = readAll(s, timeout=5)
        s.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert backend.wait(10) == 0
        response, _ = request(front, "GET", "/async/delay?seconds=0")
        assert response.status == 502
        statuses = stack.stop()
        assert statuses["front"] == 0


@pytest.mark.parametrize("target", [b"/async/\x7f", b"/async/\x80x", b"/async/x?q=\x01"])
def test_aTargetWithABytePastVisibleASCIIIs400AtTheFront(world, target):
    seen = len(world["echo"].seen)
    answer = rawGet(world["front"], target)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"Traceback" not in answer
    assert len(world["echo"].seen) == seen
    _, body = request(world["front"], "GET", "/", headers={"Accept": "application/json"})
    for demo in json.loads(body)["demos"]:
        assert all(r["in_flight"] == 0 for r in demo["replicas"])
