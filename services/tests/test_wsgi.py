"""
The WSGI service over loopback, through the front: the seed's hello, the
form, the environment, pool saturation in the metrics, and an application
that raises (500, logged, the service stays up); and the hostile clients of
issue 9, attack #6: slow calls their clients abandon, a full queue, a stop
with a backlog.
"""

import json
import socket
import threading
import time
from urllib.parse import urlencode

import pytest

from webstack.localstack import LocalStack

from .support import request, waitFor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wsgi():
    env = {
        "WEBSTACK_WSGI_THREADS_MAX": "2",
        "WEBSTACK_WSGI_THREADS_MIN": "1",
        "WEBSTACK_WSGI_QUEUE_MAX": "3",
    }
    with LocalStack(ephemeral=True, env=env, backends=("wsgi",)) as stack:
        yield stack


def front(stack):
    return stack.services["front"].port


def test_theSeedsHelloApplication(wsgi):
    response, body = request(front(wsgi), "GET", "/wsgi/hello")
    assert response.status == 200
    assert body == b"Hello, world!"
    assert response.headers["Content-Type"] == "text/plain"


def test_aPostedFormIsEchoedEscaped(wsgi):
    form = urlencode({"name": "alice", "message": "<script>alert(1)</script>"})
    response, body = request(
        front(wsgi),
        "POST",
        "/wsgi/app/form",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert b"name = alice" in body
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert b"<script>alert" not in body


def test_theEnvironmentViewShowsTheRequestNotSecrets(wsgi):
    response, body = request(
        front(wsgi), "GET", "/wsgi/app/environ?x=1", headers={"Cookie": "secret=1"}
    )
    environ = json.loads(body)
    assert environ["SCRIPT_NAME"] == "/wsgi/app"
    assert environ["PATH_INFO"] == "/environ"
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert "HTTP_COOKIE" not in environ


def metric(stack, name, default=None):
    """
    The value of C{name} (with its labels, as exposed:
    C{'wsgi_skipped_total{reason="client_gone"}'}) in the wsgi service's
    metrics, or C{default} if it is not there and one is given.
    """
    _, body = request(stack.services["wsgi"].port, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    if default is not None:
        return default
    raise AssertionError(f"{name} not in metrics")


def test_aSaturatedPoolShowsInTheMetrics(wsgi):
    """
    With two threads, three slow calls: two run, one waits; then all three
    finish.
    """
    assert metric(wsgi, "wsgi_pool_max_threads") == 2
    results = []

    def slow():
        results.append(request(front(wsgi), "GET", "/wsgi/app/slow?seconds=1")[0].status)

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    waitFor(lambda: metric(wsgi, "wsgi_pool_queued") == 1, what="a queued call")
    assert metric(wsgi, "wsgi_pool_busy") == 2
    for t in threads:
        t.join(10)
    assert results == [200, 200, 200]
    # A thread leaves the pool's working set after its call's answer is
    # handed to the reactor, so the client can read it a moment before.
    waitFor(lambda: metric(wsgi, "wsgi_pool_busy") == 0, what="every thread idle again")


@pytest.mark.parametrize("seconds", ["100", "30.5", "nan", "inf", "1e999", "-1"])
def test_theSlowPageIsBounded(wsgi, seconds):
    response, body = request(front(wsgi), "GET", f"/wsgi/app/slow?seconds={seconds}")
    assert response.status == 400


def test_anApplicationThatRaisesGets500AndIsLogged(wsgi):
    response, body = request(front(wsgi), "GET", "/wsgi/app/raise")
    assert response.status == 500
    service = wsgi.services["wsgi"]
    waitFor(
        lambda: any("this application raised on purpose" in (e.get("traceback") or "") for e in service.events()),
        what="the traceback logged",
    )
    response, body = request(front(wsgi), "GET", "/wsgi/hello")
    assert response.status == 200


def backendHead(stack, path: bytes) -> tuple[bytes, bytes]:
    """
    The header block of a GET straight to the service (names lower-cased),
    and the body as sent.
    """
    from .support import rawGet

    head, _, body = rawGet(stack.services["wsgi"].port, path).partition(b"\r\n\r\n")
    return head.lower(), body


@pytest.mark.parametrize(
    "path",
    [b"/wsgi/hello", b"/wsgi/app/environ", b"/wsgi/app/slow?seconds=0", b"/wsgi/app/slow?seconds=x", b"/wsgi/app/"],
)
def test_aBodyReturnedWholeGoesWithItsLength(wsgi, path):
    head, body = backendHead(wsgi, path)
    assert b"transfer-encoding" not in head
    [length] = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.startswith(b"content-length:")]
    assert int(length) == len(body) > 0


def test_theEmpty500OfAnApplicationThatRaisedSaysLengthZero(wsgi):
    head, body = backendHead(wsgi, b"/wsgi/app/raise")
    assert head.startswith(b"http/1.1 500")
    assert b"\r\ncontent-length: 0" in head
    assert b"transfer-encoding" not in head
    assert body == b""


# Issue 9, attack #6: hostile clients of the WSGI service.

SKIPPED_GONE = 'wsgi_skipped_total{reason="client_gone"}'
SKIPPED_STOPPING = 'wsgi_skipped_total{reason="stopping"}'
REJECTED = 'wsgi_rejected_total{reason="queue_full"}'


def sendSlow(port, seconds) -> socket.socket:
    """
    A connection that asks for the slow page and then waits, unread.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /wsgi/app/slow?seconds=%d HTTP/1.1\r\nHost: x\r\n\r\n" % seconds)
    return s


def idle(stack):
    waitFor(
        lambda: metric(stack, "wsgi_pool_busy") == 0 and metric(stack, "wsgi_pool_queued") == 0,
        what="an idle pool",
    )


def logMark(stack) -> int:
    return len(stack.services["wsgi"].events())


def tracebacks(stack, since=0):
    """
    The wsgi service's error lines (tracebacks) logged since C{logMark}.
    """
    return [
        e
        for e in stack.services["wsgi"].events()[since:]
        if e.get("traceback") or e.get("level") in ("error", "critical")
    ]


@pytest.fixture(scope="module")
def attacked():
    """
    Two threads and room for all 40 of the attack to wait, so that every
    one of them is admitted: what was run and what was not is then the
    service's choice alone.
    """
    env = {
        "WEBSTACK_WSGI_THREADS_MAX": "2",
        "WEBSTACK_WSGI_THREADS_MIN": "2",
        "WEBSTACK_WSGI_QUEUE_MAX": "40",
    }
    with LocalStack(ephemeral=True, env=env, backends=("wsgi",)) as stack:
        yield stack


def test_abandonedSlowCallsDoNotHoldUpTheNextRequest(attacked):
    """
    40 clients ask for a 5-second page and leave after half a second; the
    next request is answered at once, not after the 40 calls of 5 s that
    nobody waits for (on two threads, 100 s; 19.5 s on the default ten).
    """
    port = front(attacked)
    idle(attacked)
    mark = logMark(attacked)
    clients = []

    def abandon():
        s = sendSlow(port, 5)
        clients.append(s)
        time.sleep(0.5)
        s.close()

    threads = [threading.Thread(target=abandon) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    began = time.monotonic()
    response, body = request(port, "GET", "/wsgi/hello", timeout=5)
    waited = time.monotonic() - began
    assert (response.status, body) == (200, b"Hello, world!")
    assert waited < 1.5, f"hello waited {waited:.2f}s behind abandoned calls"
    idle(attacked)
    assert metric(attacked, REJECTED) == 0
    assert metric(attacked, "wsgi_pool_queue_max") == 40
    aborted = lambda: [  # noqa: E731
        e
        for e in attacked.services["wsgi"].events("access")
        if e["path"] == "/wsgi/app/slow?seconds=5"
    ]
    waitFor(lambda: len(aborted()) >= 40, what="40 access lines")
    assert {(e["status"], e["outcome"]) for e in aborted()} == {(499, "aborted")}
    assert tracebacks(attacked, mark) == []


def test_aCallWhoseClientLeftWhileItWaitedIsNeverRun(attacked):
    """
    Two calls hold both threads and 38 wait; the 38 clients leave, then the
    two: none of the 38 is run, and the metrics say so.
    """
    port = front(attacked)
    idle(attacked)
    mark = logMark(attacked)
    before = metric(attacked, SKIPPED_GONE, default=0.0)
    running = [sendSlow(port, 10) for _ in range(2)]
    waitFor(lambda: metric(attacked, "wsgi_pool_busy") == 2, what="two busy threads")
    waiting = [sendSlow(port, 10) for _ in range(38)]
    waitFor(lambda: metric(attacked, "wsgi_pool_queued") == 38, what="38 waiting calls")
    seen = len(attacked.services["wsgi"].events("access"))
    for s in waiting:
        s.close()
    waitFor(
        lambda: len(attacked.services["wsgi"].events("access")) >= seen + 38,
        what="the 38 seen gone",
    )
    for s in running:
        s.close()
    idle(attacked)  # not after 38 more calls of 10 s
    waitFor(lambda: metric(attacked, SKIPPED_GONE) == before + 38, what="38 skipped")
    assert tracebacks(attacked, mark) == []


def test_aFullQueueIsAnswered503AtOnce(wsgi):
    """
    Two threads busy and three calls waiting (wsgi.queue_max = 3): the next
    request is refused at once with 503 and Retry-After, not queued.
    """
    port = front(wsgi)
    idle(wsgi)
    mark = logMark(wsgi)
    rejected = metric(wsgi, REJECTED, default=0.0)
    held = [sendSlow(port, 10) for _ in range(5)]
    try:
        waitFor(
            lambda: metric(wsgi, "wsgi_pool_busy") == 2 and metric(wsgi, "wsgi_pool_queued") == 3,
            what="a full queue",
        )
        began = time.monotonic()
        response, body = request(
            port, "GET", "/wsgi/hello", headers={"Accept": "application/json"}, timeout=3
        )
        assert time.monotonic() - began < 1.0
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        document = json.loads(body)
        assert document["status"] == 503 and "busy" in document["detail"]
        assert metric(wsgi, REJECTED) == rejected + 1
    finally:
        for s in held:
            s.close()
    idle(wsgi)
    response, body = request(port, "GET", "/wsgi/hello", timeout=3)
    assert response.status == 200
    assert tracebacks(wsgi, mark) == []


def test_aClientLeavingDuringACallIsLoggedAbortedWithoutATraceback(wsgi):
    """
    The call in progress learns its client left (the demo's slow page stops
    at once, its thread free again) and the request is logged aborted (499).
    """
    idle(wsgi)
    mark = logMark(wsgi)
    s = sendSlow(wsgi.services["wsgi"].port, 20)
    waitFor(lambda: metric(wsgi, "wsgi_pool_busy") == 1, what="the call running")
    s.close()
    waitFor(lambda: metric(wsgi, "wsgi_pool_busy") == 0, timeout=2, what="the thread free")
    [line] = waitFor(
        lambda: [
            e
            for e in wsgi.services["wsgi"].events("access")
            if e["path"] == "/wsgi/app/slow?seconds=20"
        ],
        what="its access line",
    )
    assert (line["status"], line["outcome"]) == (499, "aborted")
    assert tracebacks(wsgi, mark) == []


def test_sigtermWithABacklogStopsWithinTheDrainTimeout():
    """
    Two 30-second calls running and six waiting, their clients still there:
    SIGTERM drains for drain_timeout (2 s here), then the waiting calls are
    not run and the process exits 0, instead of running the whole backlog.
    """
    env = {
        "WEBSTACK_WSGI_THREADS_MAX": "2",
        "WEBSTACK_WSGI_THREADS_MIN": "1",
        "WEBSTACK_WSGI_QUEUE_MAX": "10",
        "WEBSTACK_WSGI_DRAIN_TIMEOUT": "2",
    }
    with LocalStack(ephemeral=True, env=env, backends=("wsgi",)) as stack:
        service = stack.services["wsgi"]
        held = [sendSlow(service.port, 30) for _ in range(8)]
        try:
            waitFor(lambda: metric(stack, "wsgi_pool_queued") == 6, what="six waiting calls")
            began = time.monotonic()
            service.terminate()
            status = service.wait(15)
            took = time.monotonic() - began
        finally:
            for s in held:
                s.close()
        assert status == 0
        assert 1.5 < took < 2 + 1 + 1.5, f"stopped in {took:.2f}s"
        [stopped] = service.events("wsgi_pool_stopped")
        assert stopped["client_gone"] + stopped["stopping"] == 6
        assert service.events("wsgi_calls_abandoned") == []
        assert tracebacks(stack) == []
