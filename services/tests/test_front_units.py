"""
The front's parts in memory: replica choice and ejection on a L{Clock},
header rules, failure classification and path checks.  The exchange itself is
tested with real protocol objects in test_front_client.
"""

import math

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest
from twisted.internet.interfaces import IHostnameResolver
from zope.interface import implementer

from webstack.front.app import unsafePath
from webstack.front.deadlines import Deadlines
from webstack.front.failures import classify, connectFailureKind
from webstack.front.headers import forwardedHeaderLines, upstreamRequestHead
from webstack.front.affinity import RouteCookie
from webstack.front.upstreams import LATENCY_DECAY, LATENCY_FLOOR, ReplicaChooser, ReplicaSet

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


def test_aRouteOfOneReplicaPicksItWhileItIsAvailable():
    replicas, clock = replicaSet(1, eject=5.0)
    [a] = replicas.replicas
    assert [replicas.pick() for _ in range(3)] == [a, a, a]
    assert replicas.pick(exclude=[a]) is None
    replicas.eject(a, "refused")
    assert replicas.pick() is None
    clock.advance(5.0)
    assert replicas.pick() is a
    a.probeOK = False
    assert replicas.pick() is None


def test_aLatencyEstimatePeaksAndDecays():
    replicas, clock = replicaSet(1)
    [a] = replicas.replicas
    a.observeLatency(0.5, clock.seconds())
    assert a.estimate(clock.seconds()) == pytest.approx(0.5 + LATENCY_FLOOR)
    clock.advance(LATENCY_DECAY)
    # e^-1 of it is left; a faster answer is averaged in with that weight.
    decayed = 0.5 * math.exp(-1)
    assert a.estimate(clock.seconds()) == pytest.approx(decayed + LATENCY_FLOOR)
    a.observeLatency(0.01, clock.seconds())
    weight = math.exp(-1)
    assert a.latency == pytest.approx(decayed * weight + 0.01 * (1 - weight))
    a.observeLatency(2.0, clock.seconds())
    assert a.latency == 2.0


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


def test_hopByHopAndConnectionNamedHeadersAreDroppedFromResponses():
    lines, names = forwardedHeaderLines(
        [
            (b"Connection", b"keep-alive, X-Secret"),
            (b"X-Secret", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Set-Cookie", b"a=1"),
            (b"Upgrade", b"websocket"),
            (b"x-request-id", b"r1"),
            (b"Set-Cookie", b"b=2"),
        ]
    )
    # The rest as the upstream sent it: names as spelled, repeated ones in
    # their order.
    assert lines == b"Set-Cookie: a=1\r\nx-request-id: r1\r\nSet-Cookie: b=2\r\n"
    assert names == {b"set-cookie", b"x-request-id"}


def test_aResponseWithNothingToDropIsForwardedAsItCame():
    upstream = [(b"Content-Length", b"2"), (b"x-a", b"1"), (b"X-A", b"2"), (b"Date", b"d")]
    lines, names = forwardedHeaderLines(upstream)
    assert lines == b"Content-Length: 2\r\nx-a: 1\r\nX-A: 2\r\nDate: d\r\n"
    assert names == {b"content-length", b"x-a", b"date"}


def test_namesLoweredByTheCallerGiveTheSameLines():
    for upstream in (
        [(b"Content-Length", b"2"), (b"X-A", b"1")],
        [(b"Connection", b"X-B"), (b"X-B", b"1"), (b"Set-Cookie", b"a")],
    ):
        lowered = [name.lower() for name, _ in upstream]
        assert forwardedHeaderLines(upstream, lowered) == forwardedHeaderLines(upstream)


def test_aForwardedValueIsOneLineWhateverAParserLetThrough():
    lines, _ = forwardedHeaderLines([(b"X-A", b"one\r\n two\rthree\nfour")])
    assert lines == b"X-A: one  two three four\r\n"


class PlainRequest(DummyRequest):
    """
    A request that came over plain HTTP.
    """

    def isSecure(self):
        return False


def clientRequest(**headers):
    return dummyRequest(PlainRequest, "192.0.2.7", **headers)


def headLines(request, trustForwarded=False, bodyLength=None):
    head = upstreamRequestHead(request, trustForwarded, bodyLength)
    assert head.endswith(b"\r\n\r\n")
    first, *lines = head[:-4].split(b"\r\n")
    return first, [tuple(line.split(b": ", 1)) for line in lines]


def values(lines, name):
    return [v for n, v in lines if n.lower() == name]


def test_forwardedHeadersReplaceWhatAnUntrustedClientSent():
    request = clientRequest(host=b"site.example", x_forwarded_for=b"6.6.6.6", x_forwarded_proto=b"https")
    first, lines = headLines(request)
    assert values(lines, b"x-forwarded-for") == [b"192.0.2.7"]
    assert values(lines, b"x-forwarded-proto") == [b"http"]
    assert values(lines, b"x-forwarded-host") == [b"site.example"]
    assert values(lines, b"host") == [b"site.example"]


def test_forwardedHeadersAreExtendedBehindATrustedProxy():
    request = clientRequest(host=b"site.example", x_forwarded_for=b"203.0.113.9", x_forwarded_proto=b"https")
    first, lines = headLines(request, trustForwarded=True)
    assert values(lines, b"x-forwarded-for") == [b"203.0.113.9, 192.0.2.7"]
    assert values(lines, b"x-forwarded-proto") == [b"https"]


def test_expectAndContentLengthAreTheFrontsOwnBusiness():
    request = clientRequest(expect=b"100-continue", content_length=b"5", transfer_encoding=b"chunked")
    first, lines = headLines(request, bodyLength=7)
    assert values(lines, b"expect") == [] and values(lines, b"transfer-encoding") == []
    assert values(lines, b"content-length") == [b"7"]


def test_requestHopByHopHeadersAreDropped():
    request = clientRequest(connection=b"close, X-Hop", x_hop=b"1", te=b"trailers", x_kept=b"2")
    first, lines = headLines(request)
    names = {n.lower() for n, _ in lines}
    assert b"connection" not in names and b"x-hop" not in names and b"te" not in names
    assert values(lines, b"x-kept") == [b"2"]


def test_theRequestLineIsTheClients():
    request = clientRequest(host=b"h")
    request.method, request.uri = b"DELETE", b"/async/x?y=1"
    first, lines = headLines(request)
    assert first == b"DELETE /async/x?y=1 HTTP/1.1"


# Failures and paths.


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("refused", (502, "refused", True)),
        ("connect_timeout", (502, "connect_timeout", True)),
        ("reset", (502, "reset", False)),
        ("timeout", (504, "timeout", False)),
        ("error", (502, "error", False)),
    ],
)
def test_classify(kind, expected):
    verdict = classify(kind)
    assert (verdict.status, verdict.outcome, verdict.nothingSent) == expected


def test_connectFailureKinds():
    assert connectFailureKind(Failure(ConnectionRefusedError())) == "refused"
    assert connectFailureKind(Failure(ConnectTimeoutError())) == "connect_timeout"


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
        (b"/async/a\x00b", True),
    ],
)
def test_unsafePaths(path, unsafe):
    assert unsafePath(path) is unsafe


# One timer per route for its response-head deadlines.


def deadlines(timeout=2.0, slack=0.05):
    clock = Clock()
    expired = []
    return Deadlines(clock, timeout, expired.append, slack), clock, expired


def test_anItemExpiresAtItsTimeout():
    queue, clock, expired = deadlines()
    queue.add("a")
    clock.advance(1.999)
    assert expired == []
    clock.advance(0.001)
    assert expired == ["a"]
    assert clock.getDelayedCalls() == []


def test_aDroppedItemNeverExpiresAndLeavesNoTimer():
    queue, clock, expired = deadlines()
    queue.add("a")
    queue.discard("a")
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert expired == []


def test_itemsExpireInTheirOrderWithOneTimer():
    queue, clock, expired = deadlines(timeout=2.0)
    queue.add("a")
    clock.advance(0.5)
    queue.add("b")
    clock.advance(0.5)
    queue.add("c")
    assert len(clock.getDelayedCalls()) == 1
    queue.discard("b")
    clock.advance(1.0)
    assert expired == ["a"]
    clock.advance(0.999)
    assert expired == ["a"]
    clock.advance(0.001)
    assert expired == ["a", "c"]
    assert len(queue) == 0


def test_aSteadyStreamIsCheckedAtMostEverySlack():
    queue, clock, expired = deadlines(timeout=1.0, slack=0.1)
    queue.add(0)
    for n in range(1, 40):
        clock.advance(0.01)
        queue.add(n)
        queue.discard(n - 1)
    # The oldest (39) is due at 1.39 s; the first check at 1.0 s found it
    # 0.39 s away, the next waits that long.
    clock.advance(0.61)
    assert expired == []
    clock.advance(0.39)
    assert expired == [39]


def test_aCheckComingTooSoonWaitsForTheSlack():
    queue, clock, expired = deadlines(timeout=1.0, slack=0.1)
    queue.add("a")
    clock.advance(0.001)
    queue.add("b")
    clock.advance(0.999)
    assert expired == ["a"]
    # b is due 0.001 s later, but the next check waits the slack.
    [call] = clock.getDelayedCalls()
    assert call.getTime() == pytest.approx(1.1)
    clock.advance(0.1)
    assert expired == ["a", "b"]


def test_anItemAddedWhileExpiringLeavesOneTimer():
    clock = Clock()
    expired = []

    def onExpiry(item):
        if item == "a":
            queue.add("b")  # a pipelined request, rendered by the 504's finish
        expired.append(item)

    queue = Deadlines(clock, 2.0, onExpiry)
    queue.add("a")
    clock.advance(2.0)
    assert len([c for c in clock.getDelayedCalls() if c.active()]) == 1
    queue.discard("b")
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_anExpiryThatRaisesDoesNotStrandTheOthers():
    clock = Clock()
    expired = []

    def onExpiry(item):
        expired.append(item)
        if item == "a":
            raise RuntimeError("boom")

    queue = Deadlines(clock, 2.0, onExpiry)
    queue.add("a")
    queue.add("b")
    clock.advance(2.0)
    assert expired == ["a", "b"]


class _Request(DummyRequest):
    def isSecure(self):
        return False


def _chooser(sticky: bool):
    replicas = ReplicaSet("session", [("10.0.0.1", 80), ("10.0.0.2", 80)], Clock(), 5.0)
    cookie = RouteCookie(b"k" * 32, "/session/") if sticky else None
    return replicas, ReplicaChooser(replicas, cookie)


def test_aChooserWithoutCookieBalancesAndSetsNone():
    replicas, chooser = _chooser(sticky=False)
    request = _Request([b""])
    request.requestHeaders.setRawHeaders(b"cookie", [b"WEBSTACK_ROUTE=x; a=1"])
    assert chooser.takeCookies(request.requestHeaders) == ()
    assert request.requestHeaders.getRawHeaders(b"cookie") == [b"WEBSTACK_ROUTE=x; a=1"]
    replica, setCookie = chooser.choose(request, (), [])
    assert replica in replicas.replicas and setCookie is None


def test_aStickyChooserFollowsTheCookieAndTakesItOut():
    replicas, chooser = _chooser(sticky=True)
    second = replicas.replicas[1]
    request = _Request([b""])
    replica, setCookie = chooser.choose(request, (), [])
    assert setCookie is not None and setCookie.startswith(b"WEBSTACK_ROUTE=")
    token = chooser.cookie.token(second.address)
    request.requestHeaders.setRawHeaders(b"cookie", [b"a=1; WEBSTACK_ROUTE=" + token])
    cookies = chooser.takeCookies(request.requestHeaders)
    assert request.requestHeaders.getRawHeaders(b"cookie") == [b"a=1"]
    for _ in range(4):
        assert chooser.choose(request, cookies, []) == (second, None)
    # The replica it names has been tried: another, and a new cookie.
    replica, setCookie = chooser.choose(request, cookies, [second])
    assert replica is replicas.replicas[0] and setCookie is not None


def test_onlyFailingReplicasAreProbedBetweenFullRounds(monkeypatch):
    """
    A replica whose probe failed is asked again every unhealthy_interval,
    the others every health_interval: probeAll(failingOnly=True) picks the
    failing ones.
    """
    from webstack.front import probe

    replicas, clock = replicaSet(1, 2, 3)
    a, b, c = replicas.replicas
    b.probeOK = False
    c.probeOK = True
    asked = []
    from twisted.internet.defer import succeed

    def ask(pool, reactor, replicaSet, replica, timeout):
        asked.append(replica)
        return succeed(None)

    monkeypatch.setattr(probe, "probeReplica", ask)
    probe.probeAll(None, clock, {"async": replicas}, 1.0, failingOnly=True)
    assert asked == [b]
    del asked[:]
    probe.probeAll(None, clock, {"async": replicas}, 1.0)
    assert asked == [a, b, c]


def test_aNewOrderOfTheSameAddressesIsNotNews():
    from twisted.logger import LogLevel, globalLogPublisher

    clock = ResolvingClock()
    clock.nameResolver.answers["async"] = ["10.0.0.1", "10.0.0.2"]
    replicas = ReplicaSet("async", [("async", 8080)], clock, 5.0)
    replicas.refresh()
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock.nameResolver.answers["async"] = ["10.0.0.2", "10.0.0.1"]
        replicas.refresh()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e for e in events if e.get("event") == "replicas"] == []
    assert {r.host for r in replicas.replicas} == {"10.0.0.1", "10.0.0.2"}


def test_aReplicaThatAppearsLaterWaitsForItsFirstProbe():
    """
    A container is in the engine's DNS before its service listens: a
    replica resolved after the first lookup gets nothing until a probe
    passes; those of the first lookup are tried at once.
    """
    clock = ResolvingClock()
    clock.nameResolver.answers["async"] = ["10.0.0.1"]
    replicas = ReplicaSet("async", [("async", 8080)], clock, 5.0)
    appeared = []
    replicas.newReplica = appeared.append
    replicas.refresh()
    [first] = replicas.replicas
    assert appeared == []
    assert replicas.pick() is first
    clock.nameResolver.answers["async"] = ["10.0.0.1", "10.0.0.2"]
    replicas.refresh()
    second = [r for r in replicas.replicas if r is not first][0]
    assert appeared == [second]
    assert {replicas.pick() for _ in range(4)} == {first}
    assert replicas.pick(exclude=[first]) is None
    second.probeOK = True
    assert {replicas.pick() for _ in range(4)} == {first, second}


def test_aSlowReplicaIsAvoidedThenTriedAgainAndComesBack():
    """
    Peak EWMA: a replica whose answers take a second costs what its slowest
    answer took, so a fast one is preferred even with requests in flight;
    the estimate decays, so the slow one is tried again after a while, and
    once it answers fast it is back in rotation.
    """
    replicas, clock = replicaSet(1, 2)
    fast, slow = replicas.replicas
    fast.observeLatency(0.01, clock.seconds())
    slow.observeLatency(1.0, clock.seconds())
    fast.inFlight = 5
    assert {replicas.pick() for _ in range(10)} == {fast}
    clock.advance(25)  # the slow one's 1.0 s decays to within 2x of 11 ms...
    fast.observeLatency(0.01, clock.seconds())  # ...while the fast one keeps answering
    assert replicas.pick() is slow
    slow.observeLatency(0.01, clock.seconds())
    fast.inFlight = 0
    fast.observeLatency(0.01, clock.seconds())
    assert {replicas.pick() for _ in range(4)} == {fast, slow}


def test_aSlowerAnswerIsTheNewEstimateAFasterOneIsAveragedIn():
    replicas, clock = replicaSet(1)
    [replica] = replicas.replicas
    replica.observeLatency(0.1, 0.0)
    replica.observeLatency(0.5, 1.0)
    assert replica.latency == 0.5
    replica.observeLatency(0.1, 2.0)
    assert 0.1 < replica.latency < 0.5
