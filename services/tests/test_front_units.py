"""
The front's parts in memory: replica choice and ejection on a L{Clock},
header rules, failure classification, path checks, and one exchange driven
by a fake Agent (cancellation, timeout, retry) with no sockets.
"""

import io

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest
from twisted.internet.interfaces import IHostnameResolver
from zope.interface import implementer

from webstack.front.app import unsafePath
from webstack.front.headers import stripHopByHop, upstreamRequestHeaders
from webstack.front.metrics import ProxyMetrics
from webstack.front.proxy import Exchange, RouteProxy, classify
from webstack.front.settings import RouteSettings
from webstack.front.upstreams import ReplicaSet

from .support import dummyRequest


# Replica choice.


def replicaSet(*ports, eject=5.0):
    clock = Clock()
    return ReplicaSet("r", [("10.0.0.%d" % p, 80) for p in ports], clock, eject), clock


def test_pickPrefersTheReplicaWithFewestRequestsInFlight():
    replicas, _ = replicaSet(1, 2, 3)
    a, b, c = replicas.replicas
    a.inFlight, b.inFlight, c.inFlight = 3, 1, 2
    assert replicas.pick() is b


def test_pickRotatesAmongEquals():
    replicas, _ = replicaSet(1, 2, 3)
    picked = [replicas.pick().host for _ in range(6)]
    assert sorted(set(picked)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert picked[:3] == picked[3:]


def test_anEjectedReplicaIsLeftOutUntilItsTimeIsUp():
    replicas, clock = replicaSet(1, 2, eject=5.0)
    a, b = replicas.replicas
    replicas.eject(a, "refused")
    assert {replicas.pick().host for _ in range(4)} == {"10.0.0.2"}
    clock.advance(4.9)
    assert {replicas.pick().host for _ in range(4)} == {"10.0.0.2"}
    clock.advance(0.1)
    assert {replicas.pick().host for _ in range(4)} == {"10.0.0.1", "10.0.0.2"}


def test_whenEveryReplicaIsOutThereIsNoneToPickUntilOneIsBack():
    replicas, clock = replicaSet(1, 2, eject=5.0)
    a, b = replicas.replicas
    replicas.eject(a, "refused")
    clock.advance(1)
    replicas.eject(b, "refused")
    assert replicas.pick() is None
    clock.advance(4)
    assert replicas.pick() is a


def test_aReplicaFailingItsProbeIsLeftOut():
    replicas, _ = replicaSet(1, 2)
    a, b = replicas.replicas
    a.probeOK = False
    assert {replicas.pick().host for _ in range(4)} == {"10.0.0.2"}


def test_pickExcludesReplicasAlreadyTried():
    replicas, _ = replicaSet(1, 2)
    a, b = replicas.replicas
    assert replicas.pick(exclude=[a]) is b
    assert replicas.pick(exclude=[a, b]) is None


@implementer(IHostnameResolver)
class FakeResolver:
    def __init__(self):
        self.answers = {}

    def resolveHostName(self, receiver, hostName, portNumber=0, *args, **kwargs):
        receiver.resolutionBegan(None)
        for host in self.answers.get(hostName, []):
            receiver.addressResolved(IPv4Address("TCP", host, portNumber))
        receiver.resolutionComplete()


class ResolvingClock(Clock):
    def __init__(self):
        super().__init__()
        self.nameResolver = FakeResolver()


def test_aNameResolvesToEveryReplicaAndIsFollowedAsItChanges():
    """
    A compose service scaled up and down: one name, a changing set of
    addresses; what is known of a remaining replica is kept.
    """
    clock = ResolvingClock()
    replicas = ReplicaSet("async", [("async", 8080)], clock, 5.0)
    assert replicas.replicas == [] and not replicas.resolved
    clock.nameResolver.answers["async"] = ["172.20.0.2", "172.20.0.3"]
    replicas.refresh()
    assert [r.address for r in replicas.replicas] == ["172.20.0.2:8080", "172.20.0.3:8080"]
    replicas.replicas[0].inFlight = 7
    clock.nameResolver.answers["async"] = ["172.20.0.2", "172.20.0.4", "172.20.0.3"]
    replicas.refresh()
    assert len(replicas.replicas) == 3
    assert replicas.replicas[0].inFlight == 7
    clock.nameResolver.answers["async"] = []
    replicas.refresh()
    assert replicas.replicas == []


# Headers.


def test_hopByHopAndConnectionNamedHeadersAreDropped():
    headers = Headers(
        {
            b"connection": [b"keep-alive, X-Secret"],
            b"x-secret": [b"1"],
            b"keep-alive": [b"timeout=5"],
            b"transfer-encoding": [b"chunked"],
            b"upgrade": [b"websocket"],
            b"set-cookie": [b"a=1", b"b=2"],
        }
    )
    kept = stripHopByHop(headers)
    assert kept is headers
    assert list(kept.getAllRawHeaders()) == [(b"Set-Cookie", [b"a=1", b"b=2"])]


class PlainRequest(DummyRequest):
    """
    A request that came over plain HTTP.
    """

    def isSecure(self):
        return False


def clientRequest(**headers):
    return dummyRequest(PlainRequest, "192.0.2.7", **headers)


def test_forwardedHeadersReplaceWhatAnUntrustedClientSent():
    request = clientRequest(host=b"site.example", x_forwarded_for=b"6.6.6.6", x_forwarded_proto=b"https")
    headers = upstreamRequestHeaders(request, trustForwarded=False)
    assert headers.getRawHeaders(b"x-forwarded-for") == [b"192.0.2.7"]
    assert headers.getRawHeaders(b"x-forwarded-proto") == [b"http"]
    assert headers.getRawHeaders(b"x-forwarded-host") == [b"site.example"]
    assert headers.getRawHeaders(b"host") == [b"site.example"]


def test_forwardedHeadersAreExtendedBehindATrustedProxy():
    request = clientRequest(host=b"site.example", x_forwarded_for=b"203.0.113.9", x_forwarded_proto=b"https")
    headers = upstreamRequestHeaders(request, trustForwarded=True)
    assert headers.getRawHeaders(b"x-forwarded-for") == [b"203.0.113.9, 192.0.2.7"]
    assert headers.getRawHeaders(b"x-forwarded-proto") == [b"https"]


def test_expectAndContentLengthAreTheFrontsOwnBusiness():
    request = clientRequest(expect=b"100-continue", content_length=b"5")
    headers = upstreamRequestHeaders(request, trustForwarded=False)
    assert not headers.hasHeader(b"expect") and not headers.hasHeader(b"content-length")


# Failures and paths.


@pytest.mark.parametrize(
    "failure, timedOut, expected",
    [
        (ConnectionRefusedError(), False, (502, "refused", True)),
        (ConnectTimeoutError(), False, (502, "connect_timeout", True)),
        (ResponseFailed([Failure(ConnectionDone())]), False, (502, "reset", False)),
        (ResponseFailed([Failure(ConnectionDone())]), True, (504, "timeout", False)),
        (ValueError("?"), False, (502, "error", False)),
    ],
)
def test_classify(failure, timedOut, expected):
    assert classify(Failure(failure), timedOut) == expected


@pytest.mark.parametrize(
    "path, unsafe",
    [
        (b"/async/delay", False),
        (b"/static/a.b/c..d/", False),
        (b"/static/../x", True),
        (b"/static/./x", True),
        (b"/static/%2e%2e/x", True),
        (b"/static/%2E%2e/x", True),
        (b"/static/%252e%252e/x", True),
        (b"/static/..", True),
        (b"/static/a%5cb", True),
        (b"/static/a\\b", True),
        (b"/static/a%00", True),
    ],
)
def test_unsafePaths(path, unsafe):
    assert unsafePath(path) is unsafe


# One exchange, with a fake Agent.


class FakeAgent:
    def __init__(self):
        self.requests = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        cancelled = []
        d = Deferred(lambda d: cancelled.append(True))
        self.requests.append((method, uri, headers, bodyProducer, d, cancelled))
        return d


class FakeChannelTransport:
    aborted = False

    def abortConnection(self):
        self.aborted = True


def exchange(*ports, timeout=2.0, body=None):
    clock = Clock()
    agent = FakeAgent()
    replicas = ReplicaSet("async", [("10.0.0.%d" % p, 80) for p in ports], clock, 5.0)
    registry = CollectorRegistry()
    proxy = RouteProxy(
        RouteSettings(prefix="/async/", upstream="x:1", timeout=timeout, name="async"),
        replicas,
        agent=agent,
        reactor=clock,
        metrics=ProxyMetrics(registry),
    )
    request = clientRequest(host=b"front")
    if body is not None:
        request.requestHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
    request.uri = b"/async/delay?seconds=5"
    request.content = io.BytesIO(body or b"")
    request.channel = type("Channel", (), {"transport": FakeChannelTransport()})()
    ex = Exchange(proxy, request)
    ex.start()
    return ex, request, agent, clock, replicas, registry


def outcome(registry, name):
    return registry.get_sample_value(
        "front_upstream_exchanges_total", {"route": "async", "outcome": name}
    )


def test_theUpstreamRequestIsTheClientsOnTheChosenReplica():
    ex, request, agent, clock, replicas, registry = exchange(1)
    [(method, uri, headers, producer, d, cancelled)] = agent.requests
    assert (method, uri) == (b"GET", b"http://10.0.0.1:80/async/delay?seconds=5")
    assert producer is None
    assert headers.getRawHeaders(b"x-forwarded-for") == [b"192.0.2.7"]
    assert replicas.replicas[0].inFlight == 1


def test_aClientLeavingBeforeTheResponseCancelsTheUpstreamRequest():
    ex, request, agent, clock, replicas, registry = exchange(1)
    [(_, _, _, _, d, cancelled)] = agent.requests
    request.processingFailed(Failure(ConnectionDone()))
    assert cancelled == [True]
    assert request.written == []
    assert replicas.replicas[0].inFlight == 0
    assert clock.getDelayedCalls() == []
    assert outcome(registry, "client_gone_before_response") == 1


def test_noResponseHeadWithinTheRouteTimeoutIs504():
    ex, request, agent, clock, replicas, registry = exchange(1, timeout=2.0)
    [(_, _, _, _, d, cancelled)] = agent.requests
    clock.advance(1.999)
    assert cancelled == []
    clock.advance(0.001)
    assert cancelled == [True]
    assert request.responseCode == 504
    assert request.finished == 1
    assert outcome(registry, "timeout") == 1


def test_aRefusingReplicaIsEjectedAndTheRequestRetriedOnAnother():
    ex, request, agent, clock, replicas, registry = exchange(1, 2)
    first = agent.requests[0]
    first[4].errback(Failure(ConnectionRefusedError()))
    assert len(agent.requests) == 2
    assert agent.requests[0][1] != agent.requests[1][1]
    refused = [r for r in replicas.replicas if r.lastError]
    assert len(refused) == 1 and refused[0].ejectedUntil == 5.0
    assert registry.get_sample_value("front_upstream_retries_total", {"route": "async"}) == 1


def test_withNoReplicaAvailableTheAnswerIs502AtOnce():
    ex, request, agent, clock, replicas, registry = exchange(1)
    agent.requests[0][4].errback(Failure(ConnectionRefusedError()))
    assert request.responseCode == 502
    second = Exchange(ex.proxy, clientRequest(host=b"front"))
    second.request.uri = b"/async/x"
    second.request.content = io.BytesIO()
    second.start()
    assert len(agent.requests) == 1
    assert second.request.responseCode == 502
    assert b"1 known, all failing" in b"".join(second.request.written)
    assert outcome(registry, "no_replica") == 1


def test_aResetAfterSendingIsNotRetried():
    ex, request, agent, clock, replicas, registry = exchange(1, 2)
    agent.requests[0][4].errback(Failure(ResponseFailed([Failure(ConnectionDone())])))
    assert len(agent.requests) == 1
    assert request.responseCode == 502


def test_aBodyIsSentAgainOnARetry():
    ex, request, agent, clock, replicas, registry = exchange(1, 2, body=b"payload")
    assert agent.requests[0][3].length == 7
    agent.requests[0][4].errback(Failure(ConnectionRefusedError()))
    producer = agent.requests[1][3]
    assert producer is not agent.requests[0][3] and producer.length == 7
