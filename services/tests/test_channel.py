"""
The runtime's site and hardened channel, in memory: a L{StringTransport} for
the client and a L{Clock} for every deadline.
"""

import re

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web import server
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


def serve(resource=None, clock=None, **limits):
    clock = clock or Clock()
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


def test_theSiteSaysWhereEachRequestsBodyIsKept():
    """
    Twisted asks the site for a request's content file
    (C{getContentFile}) before its own default: a small body declared by
    its length is kept in memory, one of unknown or large length in a
    temporary file, and the resource reads it from there either way.
    """
    import io

    site, channel, transport, clock, registry = serve(maxBodyBytes=300_000)
    assert type(site.getContentFile(0)) is io.BytesIO
    assert type(site.getContentFile(99_999)) is io.BytesIO
    for length in (None, 100_000):
        kept = site.getContentFile(length)
        try:
            assert not isinstance(kept, io.BytesIO) and kept.fileno() >= 0
        finally:
            kept.close()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    channel.dataReceived(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert transport.value().count(b"HTTP/1.1 200 OK") == 2
    assert transport.value().endswith(b"3 bytes")
    assert b"5 bytes" in transport.value()


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


class CountingClock(Clock):
    """
    A L{Clock} that counts the timers made with it.
    """

    made = 0

    def callLater(self, *args, **kwargs):
        self.made += 1
        return super().callLater(*args, **kwargs)


def test_keepAliveRequestsShareOneIdleTimer():
    """
    The idle timeout is suspended while each request is handled and started
    again as its response ends, without a new timer each time.
    """
    site, channel, transport, clock, registry = serve(clock=CountingClock())
    for _ in range(50):
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        clock.advance(1)
    assert transport.value().count(b"HTTP/1.1 200 OK") == 50
    assert clock.made == 1
    clock.advance(59)
    assert transport.disconnecting


def test_theIdleTimeoutRunsFromTheEndOfALongRequest():
    """
    A request handled for longer than the idle timeout is not timed out, and
    the connection's idle time counts from the end of its response.
    """
    site, channel, transport, clock, registry = serve(Hanging())
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(150)
    assert not transport.disconnecting
    [request] = channel.requests
    request.write(b"late")
    request.finish()
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_aRequestPutsTheIdleTimeoutBack():
    """
    A connection idle for 50 s that sends a request gets 60 s more from its
    response's end.
    """
    site, channel, transport, clock, registry = serve()
    clock.advance(50)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_aShorterIdleTimeoutTakesEffectAtOnce():
    site, channel, transport, clock, registry = serve()
    channel.setTimeout(5)
    clock.advance(5)
    assert transport.disconnecting


def test_aClosedConnectionLeavesNoIdleTimer():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    channel.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


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


class Kept(Resource):
    """
    Keeps every request it is given; answers at once if C{answer}, else never.
    """

    isLeaf = True

    def __init__(self, answer=False):
        super().__init__()
        self.answer = answer
        self.requests = []

    def render(self, request):
        self.requests.append(request)
        return b"ok" if self.answer else NOT_DONE_YET


def test_aListenerHearsItsClientLeaveBeforeTheRequestFinished():
    kept = Kept()
    site, channel, transport, clock, registry = serve(kept)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [request] = kept.requests
    heard = []
    request.whenLost(heard.append)
    request.whenLost(lambda reason: heard.append("second"))
    reason = Failure(ConnectionDone())
    channel.connectionLost(reason)
    assert heard == [reason, "second"]
    # Once, as a Deferred's errback fires once.
    request.connectionLost(reason)
    assert heard == [reason, "second"]


def test_aListenerHearsNothingOfARequestThatFinished():
    kept = Kept(answer=True)
    site, channel, transport, clock, registry = serve(kept)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [request] = kept.requests
    assert request.finished
    heard = []
    request.whenLost(heard.append)
    request.connectionLost(Failure(ConnectionDone()))
    channel.connectionLost(Failure(ConnectionDone()))
    assert heard == []


class Arguments(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def render(self, request):
        self.seen.append((request.method, request.uri, request.path, request.clientproto,
                          request.args, request.content.read()))
        return b"ok"


URIS = [b"/a", b"/a?", b"/a?b=c&b=d;e=f", b"/a?x", b"/a?x=", b"/?%41=%42+c", b"/a?b=1?c=2",
        b"/a/b%2Fc?q=%zz", b"*"]


@pytest.mark.parametrize("uri", URIS)
def test_theQueryParsedWhenAskedForGivesWhatTwistedGives(uri):
    """
    A site that parses no form parses the query only when C{args} is asked
    for; a site that parses forms goes Twisted's way.  Both see the same.
    """
    seen = []
    for parseForms in (False, True):
        resource = Arguments()
        site, channel, transport, clock, registry = serve(resource, parseForms=parseForms)
        channel.dataReceived(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" % uri)
        seen.append((resource.seen, transport.value().split(b"\r\n", 1)[0]))
    assert seen[0] == seen[1]


class Segments(Arguments):
    def render(self, request):
        self.seen.append(request.prepath + request.postpath)
        return b"ok"


@pytest.mark.parametrize(
    "uri", [b"/", b"/a", b"/a/b/", b"//a", b"/a/b%2Fc", b"/%41%zz/%", b"/a%20b/c?x=%2F"]
)
def test_thePathSegmentsAResourceSeesAreAStockSites(uri):
    """
    The runtime unquotes a path's segments only when it has a C{%}; a stock
    Twisted L{server.Site} unquotes every one.  A resource sees the same.
    """
    seen = []
    stock = Segments()
    channel = server.Site(stock).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % uri)
    ours = Segments()
    serve(ours)[1].dataReceived(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % uri)
    assert ours.seen == stock.seen
    assert len(stock.seen) == 1


def test_aQueryNoResourceAsksForIsNeverParsed(monkeypatch):
    from webstack.runtime import site as module

    parsed = []
    monkeypatch.setattr(module, "parse_qs", lambda *a: parsed.append(a) or {})
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET /?a=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert parsed == []
    resource = Arguments()
    site, channel, transport, clock, registry = serve(resource)
    channel.dataReceived(b"GET /?a=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parsed == [(b"a=1", 1)]


def test_aRequestIdIsKeptOrMade():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n")
    assert b"X-Request-Id: abc-123\r\n" in transport.value()
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: <script>\r\n\r\n")
    assert b"<script>" not in transport.value()
    assert b"X-Request-Id: " in transport.value()


def test_everyRequestClassIsAFactoryTakingJustTheChannel():
    """
    Twisted's channel asks a request class for every request whether it is
    an L{INonQueuedRequestFactory}; the runtime's classes, and classes made
    from them (sessions, workers), say yes rather than let zope.interface
    make and drop an AttributeError to say no.
    """
    from twisted.web.http import INonQueuedRequestFactory

    from webstack.runtime.site import ObservedRequest
    from webstack.runtime.workers import workerRequestFactory

    made = type("Made", (ObservedRequest,), {})
    for cls in (ObservedRequest, made, workerRequestFactory(made, b"front/1/1")):
        assert INonQueuedRequestFactory.providedBy(cls), cls
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")


def test_requestsCompareAsTwistedsOwnDo():
    """
    A request equals itself only, a proxy of it included, as a stock
    Twisted request does (the runtime's compares in C).
    """
    from twisted.python.components import proxyForInterface
    from twisted.web.http import Request
    from twisted.web.iweb import IRequest

    def comparisons(first, second):
        proxy = proxyForInterface(IRequest)(first)
        return [first == first, first != first, first == second, first != second,
                first == proxy, proxy == first, first != proxy, len({first, first, second})]

    kept = Kept(answer=False)
    site, channel, transport, clock, registry = serve(kept)
    channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    [ours] = kept.requests
    assert type(ours).__eq__ is not Request.__eq__
    stock = comparisons(Request(channel), Request(channel))
    assert comparisons(ours, type(ours)(channel)) == stock
    assert stock == [True, False, False, True, False, False, True, 2]


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
@pytest.mark.parametrize(
    "extra", [b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n", b"Cookie: a=1; b\r\n"]
)
def test_persistenceAndCookiesAreAStockSites(version, extra):
    """
    What a request says of keeping its connection and of its cookies, and
    what the response says back, as on a stock Twisted L{server.Site}.
    """
    def answer(channel):
        channel.dataReceived(b"GET / %s\r\nHost: x\r\n%s\r\n" % (version, extra))
        [request] = resource.requests
        return (request.channel.persistent, request.received_cookies,
                request.responseHeaders.getRawHeaders(b"connection"))

    resource = Kept()
    stock = server.Site(resource).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    stock.makeConnection(StringTransport())
    expected = answer(stock)
    resource = Kept()
    site, channel, transport, clock, registry = serve(resource)
    assert answer(channel) == expected


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


def test_routeLabelsAreRememberedInABoundedTable():
    labeler = RouteLabeler(["/async/delay", "/metrics"])
    labeler.cacheSize = 3
    for n in range(10):
        assert labeler(b"/async/delay/%d" % n) == "/async/delay"
        assert len(labeler._known) <= 3
    assert labeler(b"/metrics") == "/metrics"
    assert labeler(b"/" + b"m" * 300) == "other"
    assert b"/" + b"m" * 300 not in labeler._known


class Empty(Resource):
    """
    Answers later, with nothing written: C{finish()} alone.
    """

    isLeaf = True

    def __init__(self, code=200):
        super().__init__()
        self.code = code

    def render(self, request):
        request.setResponseCode(self.code)
        self.pending = request
        return NOT_DONE_YET


def head(transport):
    return transport.value().split(b"\r\n\r\n", 1)[0].lower()


@pytest.mark.parametrize("code", [200, 500, 302])
def test_aResponseFinishedWithNothingWrittenSaysContentLengthZero(code):
    """
    An empty body (WSGIResource's bare 500, a redirect) is one piece too:
    C{Content-Length: 0}, not an empty chunked body.
    """
    resource = Empty(code)
    site, channel, transport, clock, registry = serve(resource)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    resource.pending.finish()
    assert b"\r\ncontent-length: 0" in head(transport)
    assert b"transfer-encoding" not in head(transport)
    assert transport.value().endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    "method, code", [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)]
)
def test_noContentLengthZeroWhereItWouldBeWrong(method, code):
    """
    A HEAD's length is its GET's, and 204/304 have no body to measure.
    """
    resource = Empty(code)
    site, channel, transport, clock, registry = serve(resource)
    channel.dataReceived(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    resource.pending.finish()
    assert b"content-length" not in head(transport)
    assert b"transfer-encoding" not in head(transport)


def test_aGzipEncodedResponseFinishedWithNothingWrittenIsWholeAndFramed():
    """
    An encoder's trailer is written past the site's own write (Twisted's
    C{finish} calls the channel's directly): the head still gets this
    side's headers, and a length declared before the encoder made the body
    (an empty file's C{Content-Length: 0}) is not sent with the gzip bytes
    after it, which a keep-alive client would read as the next response.
    """
    import zlib

    from twisted.web.resource import EncodingResourceWrapper

    class EmptyFile(Empty):
        def render(self, request):
            request.setHeader(b"content-length", b"0")
            return super().render(request)

    empty = EmptyFile()
    site, channel, transport, clock, registry = serve(
        EncodingResourceWrapper(empty, [server.GzipEncoderFactory()])
    )
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    empty.pending.finish()
    top, _, body = transport.value().partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in top.lower().split(b"\r\n")[1:])
    for name in (b"x-request-id", b"x-served-by", b"server", b"date"):
        assert name in fields
    assert fields[b"content-encoding"] == b"gzip"
    assert b"content-length" not in fields
    assert fields[b"transfer-encoding"] == b"chunked"
    chunks, rest = [], body
    while True:
        size, _, rest = rest.partition(b"\r\n")
        if int(size, 16) == 0:
            break
        chunks.append(rest[: int(size, 16)])
        rest = rest[int(size, 16) + 2 :]
    assert rest == b"\r\n"
    assert zlib.decompress(b"".join(chunks), 16 + zlib.MAX_WBITS) == b""


@pytest.mark.parametrize("method, code", [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_aGzipEncodedResponseWithNoBodySendsNoTrailer(method, code):
    """
    The encoder's last bytes are a body piece like any other: none after
    the head of a HEAD, a 204 or a 304 (on a keep-alive connection, the
    client would read them as the start of the next response).
    """
    from twisted.web.resource import EncodingResourceWrapper

    class Hello(Empty):
        def render(self, request):
            super().render(request)
            request.write(b"hello")
            return NOT_DONE_YET

    hello = Hello(code)
    site, channel, transport, clock, registry = serve(
        EncodingResourceWrapper(hello, [server.GzipEncoderFactory()])
    )
    channel.dataReceived(method + b" / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    hello.pending.finish()
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 %d " % code) and out.endswith(b"\r\n\r\n")
    assert out.count(b"\r\n\r\n") == 1


def test_finishWithSaysTheLengthOfABodyWrittenInOnePiece():
    from webstack.runtime.site import finishWith

    resource = Empty()
    site, channel, transport, clock, registry = serve(resource)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    finishWith(resource.pending, b"twelve bytes")
    assert b"\r\ncontent-length: 12" in head(transport)
    assert b"transfer-encoding" not in head(transport)
    assert transport.value().endswith(b"\r\n\r\ntwelve bytes")


def test_theDirectMetricPathExposesWhatThePublicOneDoes():
    """
    L{HTTPMetrics} adds to prometheus_client's values directly; the
    exposition must be the one the public C{inc}/C{observe} would give,
    every latency bucket edge included (an upgrade that moves those values
    fails here, not in production).
    """
    from prometheus_client import generate_latest

    from webstack.runtime.metrics import LATENCY_BUCKETS, HTTPMetrics, adder, observer

    amounts = [0.0, 0.0005, *LATENCY_BUCKETS, 0.0011, 7.5, 500.0, -1.0]
    direct, public = CollectorRegistry(), CollectorRegistry()
    metrics = HTTPMetrics(direct)
    reference = HTTPMetrics(public)
    for amount in amounts:
        metrics.received()
        metrics.observe("/a", "GET", "200", amount)
        reference.inFlight.inc()
        reference.inFlight.dec()
        reference.requests.labels("/a", "GET", "200").inc()
        reference.latency.labels("/a").observe(amount)
    metrics.received()
    reference.inFlight.inc()

    def exposition(registry):
        # Without the _created samples: when each child was made.
        return [
            line
            for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line
        ]

    assert exposition(direct) == exposition(public)
    assert 'http_requests_in_flight 1.0' in exposition(direct)

    class Opaque:
        """A metric whose value is not where this version keeps it."""

        def __init__(self):
            self.seen = []

        def inc(self, amount=1):
            self.seen.append(amount)

        def observe(self, amount):
            self.seen.append(amount)

    opaque = Opaque()
    adder(opaque)(2)
    observer(opaque)(0.5)
    assert opaque.seen == [2, 0.5]


def test_theDirectMetricPathWritesTheWorkersFileAsThePublicOneDoes(tmp_path, monkeypatch):
    """
    In a worker, prometheus_client keeps each value in a file the workers
    share, and L{adder} and L{observer} write it without the value's lock
    and fork check: the file must then hold what the public C{inc} and
    C{observe} would leave there, every latency bucket edge included, and
    each addition must be there as soon as it is made (another worker may
    answer the next scrape).
    """
    from prometheus_client import generate_latest, values
    from prometheus_client.multiprocess import MultiProcessCollector

    from webstack.runtime.metrics import LATENCY_BUCKETS, HTTPMetrics

    amounts = [0.0, 0.0005, *LATENCY_BUCKETS, 0.0011, 7.5, 500.0, -1.0]

    def exposition(name, count):
        # A worker's files of its own (a labelled child makes its values,
        # in the directory of the moment, when first asked for).
        directory = tmp_path / name
        directory.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
        count(HTTPMetrics(CollectorRegistry()))
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(directory))
        return sorted(generate_latest(registry).decode().splitlines())

    def direct(metrics):
        def refused(self, amount):
            raise AssertionError("the shared value's inc (lock, getpid) was called")

        assert metrics.inFlight._value._multiprocess
        monkeypatch.setattr(type(metrics.inFlight._value), "inc", refused)
        for amount in amounts:
            metrics.received()
            metrics.observe("/a", "GET", "200", amount)
        metrics.received()

    def public(metrics):
        for amount in amounts:
            metrics.inFlight.inc()
            metrics.inFlight.dec()
            metrics.requests.labels("/a", "GET", "200").inc()
            metrics.latency.labels("/a").observe(amount)
        metrics.inFlight.inc()

    directFiles, publicFiles = exposition("direct", direct), exposition("public", public)
    assert directFiles == publicFiles
    assert f'http_requests_total{{method="GET",route="/a",status="200"}} {len(amounts)}.0' in (
        directFiles
    )
    assert "http_requests_in_flight 1.0" in directFiles


@pytest.mark.parametrize(
    "path, extra",
    [
        (b"/", b""),
        (b"/q?a=%22&b=\\x", b'X-Forwarded-For: 1.2.3.4, "5"\\\r\n'),
        (b"/%c3%a9~", b"X-Request-Id: id-1\r\nX-Forwarded-For: a\tb\r\n"),
    ],
)
def test_theAccessLineIsWhatTheGenericPathWouldWrite(path, extra):
    """
    The access event brings its JSON line ready-made; it must be the line
    the event's own fields make, odd characters in the path and headers
    included.
    """
    import io
    import json

    from twisted.logger import globalLogPublisher

    from webstack.runtime.logs import ENCODED, JSONLineObserver, eventAsRecord

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        site, channel, transport, clock, registry = serve()
        channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    [event] = [e for e in events if e.get("event") == "access"]
    out = io.StringIO()
    JSONLineObserver(out)(event)
    plain = {k: v for k, v in event.items() if k != ENCODED}
    assert out.getvalue() == json.dumps(eventAsRecord(plain), ensure_ascii=False) + "\n"
    record = json.loads(out.getvalue())
    assert record["msg"].startswith("GET /")
    assert (record["status"], record["outcome"], record["bytes"]) == (200, "ok", 2)
    assert record["ns"] == "webstack.access" and record["route"] == "/"


def test_anyAccessFieldIsEncodedAsJSONWould():
    import io
    import json

    from webstack.runtime import site as siteModule
    from webstack.runtime.logs import ENCODED, JSONLineObserver, eventAsRecord

    odd = 'a"\\\x01\x7f\u2028é\ufffd'
    events = []
    observer, siteModule.accessLog.observer = siteModule.accessLog.observer, events.append
    try:
        siteModule._emitAccess(odd, odd, "499", "aborted", 0, 0.1, odd, odd, odd, odd)
    finally:
        siteModule.accessLog.observer = observer
    [event] = events
    out = io.StringIO()
    JSONLineObserver(out)(event)
    plain = {k: v for k, v in event.items() if k != ENCODED}
    assert out.getvalue() == json.dumps(eventAsRecord(plain), ensure_ascii=False) + "\n"
    assert json.loads(out.getvalue())["forwarded_for"] == odd


def test_startupObjectsAreFrozenOncePerProcess(monkeypatch):
    import gc

    from webstack.runtime import collector

    calls = []
    monkeypatch.setattr(collector, "_frozen", False)
    monkeypatch.setattr(gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    for _ in range(2):
        site, channel, transport, clock, registry = serve()
        site.doStart()
        site.doStop()
    assert calls == ["collect", "freeze"]


def test_theConnectionsAddressesAreAskedForOnce():
    # Twisted asks for them on every request: a getsockname() and a new
    # address object each time.
    site, channel, transport, clock, registry = serve()
    asked = []
    getHost, getPeer = transport.getHost, transport.getPeer
    transport.getHost = lambda: asked.append("host") or getHost()
    transport.getPeer = lambda: asked.append("peer") or getPeer()
    for _ in range(3):
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().count(b"HTTP/1.1 200 OK") == 3
    assert sorted(asked) == ["host", "peer"]
    assert channel.isSecure() is False


class OwnHeaders(Resource):
    """
    Answers with a C{Server} and C{Date} of its own, as a proxied response
    does (the upstream's).
    """

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"server", b"upstream/1")
        request.setHeader(b"date", b"Sun, 06 Nov 1994 08:49:37 GMT")
        return b"ok"


def test_everyResponseSaysServerAndDate():
    site, channel, transport, clock, registry = serve()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = head(transport).split(b"\r\n")
    [serverLine] = [line for line in lines if line.startswith(b"server: ")]
    assert serverLine == b"server: " + server.version.lower()
    [dateLine] = [line for line in lines if line.startswith(b"date: ")]
    assert dateLine.endswith(b" gmt") and len(dateLine) == len(b"date: sun, 06 nov 1994 08:49:37 gmt")


def test_aResponseWithItsOwnServerAndDateKeepsThem():
    """
    Server and Date are set as the head is written, and only if missing: a
    proxied response keeps the upstream's (they are not made only to be
    replaced).
    """
    site, channel, transport, clock, registry = serve(OwnHeaders())
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = head(transport).split(b"\r\n")
    assert [line for line in lines if line.startswith(b"server: ")] == [b"server: upstream/1"]
    assert [line for line in lines if line.startswith(b"date: ")] == [
        b"date: sun, 06 nov 1994 08:49:37 gmt"
    ]


def test_theHttpDateIsMadeOnceASecond():
    from webstack.runtime.site import httpDate

    assert httpDate(784111777.0) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert httpDate(784111777.9) is httpDate(784111777.0)
    assert httpDate(784111778.2) == b"Sun, 06 Nov 1994 08:49:38 GMT"


# A head parsed whole (LimitedHTTPChannel._wholeHead) against Twisted's line
# path: each request below goes in as one read, then a byte at a time (every
# read but the first then finds part of the head buffered, so the line path
# parses it); what the resource saw and what the client got must be the same.


class Recorder(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def render(self, request):
        headers = [
            (name, list(values))
            for name, values in request.requestHeaders.getAllRawHeaders()
            if name != b"X-Request-Id"
        ]
        self.seen.append(
            (request.method, request.uri, request.clientproto, headers, request.content.read())
        )
        return b"seen"


_MADE_FRESH = re.compile(rb"(?im)^(date|x-request-id): .*$")


def exchange(raw: bytes, whole: bool):
    recorder = Recorder()
    site, channel, transport, clock, registry = serve(recorder)
    if whole:
        channel.dataReceived(raw)
    else:
        for i in range(len(raw)):
            if transport.disconnecting:
                break  # a closing TCP transport reads no more
            channel.dataReceived(raw[i : i + 1])
    answer = _MADE_FRESH.sub(rb"\1: -", transport.value())
    return recorder.seen, answer, bool(transport.disconnecting)


HEADS = {
    "plain": b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    "repeated and oddly cased": (
        b"GET / HTTP/1.1\r\nhost: x\r\nX-THING: 1\r\nx-thing:2\r\nEtag:  \t e \t\r\n"
        b"X-Empty:\r\nWww-Authenticate: w\r\n\r\n"
    ),
    "a body of declared length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "a chunked body": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    ),
    "pipelined": b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: y\r\n\r\n",
    "then Connection: close, then more": (
        b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "HTTP/1.0 with no Host": b"GET / HTTP/1.0\r\n\r\n",
    "an empty line first": b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "a folded header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: one\r\n  two\r\n\r\n",
    "a bare LF in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\nb\r\n\r\n",
    "a bare CR in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
    "a NUL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    "a space in a name": b"GET / HTTP/1.1\r\nHost: x\r\nX Bad: a\r\n\r\n",
    "a space before the colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "a line with no colon": b"GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n",
    "a bad request line": b"GET /\r\nHost: x\r\n\r\n",
    "a length that is not a number": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello",
    "a length and chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
    "two lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "a body over the limit": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc",
    "too many fields": b"GET / HTTP/1.1\r\n" + b"X-N: 1\r\n" * 25 + b"\r\n",
    "a head over the limit": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n",
    "exactly as many fields as allowed": b"GET / HTTP/1.1\r\n" + b"X-N: 1\r\n" * 20 + b"\r\n",
    "one field more": b"GET / HTTP/1.1\r\n" + b"X-N: 1\r\n" * 21 + b"\r\n",
    "lines ended by LF alone": b"GET / HTTP/1.1\nHost: x\n\n",
    "a CR before the line's end": b"GET / HTTP/1.1\r\r\nHost: x\r\n\r\n",
    "an empty name": b"GET / HTTP/1.1\r\nHost: x\r\n: x\r\n\r\n",
    "a tab in a name": b"GET / HTTP/1.1\r\nHost: x\r\nX\tBad: a\r\n\r\n",
    "bytes past ASCII and control characters in values": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Text: caf\xc3\xa9 \xff\r\nX-Ctl: a\x0bb\x0cc\r\n\r\n"
    ),
    "Transfer-Encoding: identity": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
    "Transfer-Encoding: chunked, gzip": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
    ),
    "a signed length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    "Expect: 100-continue": (
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
    ),
    "HEAD": b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_aHeadParsedWholeGivesWhatTheLinePathGives(name):
    raw = HEADS[name]
    assert exchange(raw, whole=True) == exchange(raw, whole=False)


def test_aHeadThatArrivesWholeIsParsedWithoutTheLinePath(monkeypatch):
    from webstack.runtime.channel import LimitedHTTPChannel

    lines = []
    original = LimitedHTTPChannel.lineReceived

    def counted(self, line):
        lines.append(line)
        return original(self, line)

    monkeypatch.setattr(LimitedHTTPChannel, "lineReceived", counted)
    seen, answer, closed = exchange(HEADS["repeated and oddly cased"], whole=True)
    assert lines == []
    assert seen and answer.startswith(b"HTTP/1.1 200 OK") and not closed
    # Anything it does not take goes the line path's way.
    exchange(HEADS["a folded header"], whole=True)
    assert b"  two" in lines
