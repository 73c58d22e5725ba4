"""
The runtime's site and hardened channel, in memory: a L{StringTransport} for
the client and a L{Clock} for every deadline.
"""

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from webstack.runtime.metrics import HTTPMetrics
from webstack.runtime.site import RouteLabeler, WebSite


class Echo(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"ok"

    def render_POST(self, request):
        return b"%d bytes" % (len(request.content.read()),)


class Hanging(Resource):
    isLeaf = True

    def render_GET(self, request):
        return NOT_DONE_YET


def serve(resource=None, **limits):
    clock = Clock()
    registry = CollectorRegistry()
    metrics = HTTPMetrics(registry)
    settings = dict(
        idleTimeout=60.0,
        headTimeout=10.0,
        bodyTimeout=30.0,
        maxHeaderBytes=2048,
        maxHeaders=20,
        maxBodyBytes=1000,
    )
    settings.update(limits)
    site = WebSite(
        resource or Echo(),
        reactor=clock,
        metrics=metrics,
        routeLabeler=RouteLabeler(["/"]),
        **settings,
    )
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    channel.makeConnection(transport)
    return site, channel, transport, clock, registry


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


def test_aCompleteRequestIsServed():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK")
    assert transport.value().endswith(b"ok")
    assert sample(registry, "http_requests_total", route="/", method="GET", status="200") == 1
    assert not transport.disconnecting


def test_aSlowHeadGets408AtTheDeadlineEvenIfBytesKeepComing():
    """
    Slowloris: a byte now and then resets the idle timeout, but the head
    deadline runs from the first byte and is not moved.
    """
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    for _ in range(9):
        clock.advance(1)
        channel.dataReceived(b"X")
    assert transport.value() == b""
    clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"request head not received within 10 s" in transport.value()
    assert transport.disconnecting
    assert sample(registry, "http_requests_refused_total", reason="head_timeout") == 1


def test_theHeadDeadlineStartsAgainForTheNextRequest():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(9)
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    clock.advance(9)
    assert b"408" not in transport.value()
    clock.advance(1)
    assert b"HTTP/1.1 408" in transport.value()


def test_anIdleKeepAliveConnectionIsClosedByTheIdleTimeout():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_aHeadLargerThanTheLimitGets431():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert b"request head is larger than 2048 bytes" in transport.value()
    assert transport.disconnecting


def test_manyHeadersAddingUpPastTheLimitGet431():
    site, channel, transport, clock, registry = serve(maxHeaders=1000)
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(30))
    channel.dataReceived(head + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 431")


def test_tooManyHeaderFieldsGet431():
    site, channel, transport, clock, registry = serve()
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(21))
    channel.dataReceived(head + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 431")
    assert b"more than 20 header fields" in transport.value()


def test_aDeclaredBodyLargerThanTheLimitGets413BeforeItIsSent():
    """
    The Content-Length is enough to refuse; no 100 Continue invites the body.
    """
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 1001\r\n\r\n"
    )
    value = transport.value()
    assert value.startswith(b"HTTP/1.1 413 Content Too Large")
    assert b"100 Continue" not in value
    assert b"request body is larger than 1000 bytes" in value


def test_aChunkedBodyGrowingPastTheLimitGets413():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    channel.dataReceived(b"258\r\n" + b"a" * 600 + b"\r\n")
    assert transport.value() == b""
    channel.dataReceived(b"258\r\n" + b"a" * 600 + b"\r\n0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413")
    assert transport.value().count(b"HTTP/1.1") == 1
    assert sample(registry, "http_requests_refused_total", reason="body_too_large") == 1


@pytest.mark.parametrize("chunked", [False, True])
def test_aBodyAtTheLimitIsServed(chunked):
    site, channel, transport, clock, registry = serve()
    body = b"b" * 1000
    if chunked:
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3e8\r\n" + body + b"\r\n0\r\n\r\n"
        )
    else:
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + body
        )
    assert transport.value().startswith(b"HTTP/1.1 200")
    assert transport.value().endswith(b"1000 bytes")


def test_aSlowBodyGets408():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    clock.advance(29)
    channel.dataReceived(b"6")
    clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408")
    assert b"request body not received within 30 s" in transport.value()


def test_aRefusedPeerThatDoesNotReadIsAborted():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
    clock.advance(channel.abortTimeout)
    assert transport.disconnected


def test_anAbandonedRequestIsCountedAs499AndLeavesNothingInFlight():
    site, channel, transport, clock, registry = serve(Hanging())
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sample(registry, "http_requests_in_flight") == 1
    channel.connectionLost(Failure(ConnectionDone()))
    assert sample(registry, "http_requests_in_flight") == 0
    assert sample(registry, "http_requests_total", route="/", method="GET", status="499") == 1
    assert site.channels == set()


def test_aRequestIdIsKeptOrMade():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n")
    assert b"X-Request-Id: abc-123\r\n" in transport.value()
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: <script>\r\n\r\n")
    assert b"<script>" not in transport.value()
    assert b"X-Request-Id: " in transport.value()


def test_drainClosesAnIdleConnectionAtOnce():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    channel.closeWhenIdle()
    assert transport.disconnecting


def test_drainLetsARequestInProgressFinishThenCloses():
    hanging = Hanging()
    requests = []
    hanging.render_GET = lambda request: requests.append(request) or NOT_DONE_YET
    site, channel, transport, clock, registry = serve(hanging)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    channel.closeWhenIdle()
    assert not transport.disconnecting
    requests[0].write(b"done")
    requests[0].finish()
    assert b"Connection: close" in transport.value()
    assert transport.disconnecting


def test_routeLabelsAreBounded():
    labeler = RouteLabeler(["/async/delay", "/async/", "/metrics"])
    assert labeler(b"/async/delay") == "/async/delay"
    assert labeler(b"/async/delayed-more") == "/async/delay"
    assert labeler(b"/async/other") == "/async/"
    assert labeler(b"/random/path") == "other"
