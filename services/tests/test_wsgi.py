"""
The WSGI service over loopback, through the front: the seed's hello, the
form, the environment, pool saturation in the metrics, and an application
that raises (500, logged, the service stays up).
"""

import json
import threading
from urllib.parse import urlencode

import pytest

from webstack.localstack import LocalStack

from .support import request, waitFor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wsgi():
    env = {"WEBSTACK_WSGI_THREADS_MAX": "2", "WEBSTACK_WSGI_THREADS_MIN": "1"}
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


def metric(stack, name):
    _, body = request(stack.services["wsgi"].port, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
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
    assert metric(wsgi, "wsgi_pool_busy") == 0


def test_theSlowPageIsBounded(wsgi):
    response, body = request(front(wsgi), "GET", "/wsgi/app/slow?seconds=100")
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
