"""
The async service's endpoints, driven in memory on a L{Clock}: no sockets and
no sleeps, so "completes at exactly S" is checked exactly.
"""

import json

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from webstack.async_.app import ENDPOINTS, IndexResource
from webstack.async_.base import BODY
from webstack.async_.deferred import DeferredDelayedResource
from webstack.async_.delay import DelayedResource
from webstack.async_.interruptible import InterruptibleDelayedResource
from webstack.async_.logged import LoggedDelayedResource
from webstack.async_.settings import Settings
from webstack.async_.stats import DelayStats, StatsResource
from webstack.async_.stream import StreamingResource

SEEDS = [
    DelayedResource,
    DeferredDelayedResource,
    InterruptibleDelayedResource,
    LoggedDelayedResource,
]
INTERRUPTIBLE = [InterruptibleDelayedResource, LoggedDelayedResource]
NAIVE = [DelayedResource, DeferredDelayedResource]


def build(cls, **limits):
    clock = Clock()
    stats = DelayStats(name.decode() for name in ENDPOINTS)
    return cls(clock, Settings(**limits), stats), clock, stats


def get(resource, **args):
    request = DummyRequest([b""])
    request.args = {k.encode(): [v.encode()] for k, v in args.items()}
    request.render(resource)
    return request


def disconnect(request):
    request.processingFailed(Failure(ConnectionDone("client went away")))


@pytest.mark.parametrize("cls", SEEDS)
def test_completesAtExactlyTheDelay(cls):
    """
    Nothing is written before S seconds; at S the seed's body is written and
    the request finished, and no delayed call is left behind.
    """
    resource, clock, stats = build(cls)
    request = get(resource, seconds="2.5")
    assert request.written == [] and not request.finished
    clock.advance(2.499)
    assert request.written == [] and not request.finished
    clock.advance(0.001)
    assert b"".join(request.written) == BODY
    assert request.finished == 1
    assert clock.getDelayedCalls() == []
    counts = stats.endpoints[cls.endpoint].asJSON()
    assert counts == {
        "started": 1,
        "completed": 1,
        "cancelled": 0,
        "wasted": 0,
        "in_flight": 0,
    }


@pytest.mark.parametrize("cls", SEEDS)
def test_defaultDelayIsFiveSeconds(cls):
    """
    Without C{?seconds=}, the delay is the seeds' 5 seconds.
    """
    resource, clock, _ = build(cls)
    request = get(resource)
    [call] = clock.getDelayedCalls()
    assert call.getTime() == 5.0
    clock.advance(5)
    assert request.finished == 1


@pytest.mark.parametrize("cls", SEEDS)
def test_concurrentRequestsDoNotWaitOnEachOther(cls):
    """
    Seed 001: a second request made one second after the first still takes
    its own S seconds, not S plus what the first has left.
    """
    resource, clock, _ = build(cls)
    first = get(resource, seconds="3")
    clock.advance(1)
    second = get(resource, seconds="3")
    clock.advance(2)
    assert first.finished and not second.finished
    clock.advance(1)
    assert second.finished


@pytest.mark.parametrize("cls", INTERRUPTIBLE)
def test_disconnectCancelsTheDelayedCall(cls):
    """
    Seed 000: when the client goes away, the pending call is cancelled, no
    delayed call is left, nothing is ever written, and the stats say so.
    """
    resource, clock, stats = build(cls)
    request = get(resource, seconds="5")
    clock.advance(1)
    disconnect(request)
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert request.written == [] and not request.finished
    counts = stats.endpoints[cls.endpoint]
    assert (counts.cancelled, counts.completed, counts.wasted, counts.in_flight) == (
        1,
        0,
        0,
        0,
    )


def test_loggedInterruptionSaysWhatHappened():
    """
    Seed 002: the interruption is logged with the seed's message, the
    failure, and how much of the delay was saved.
    """
    resource, clock, _ = build(LoggedDelayedResource)
    request = get(resource, seconds="5")
    clock.advance(1.5)
    with capturedLogs() as events:
        disconnect(request)
    [event] = [e for e in events if e.get("event") == "interrupted"]
    assert event["log_format"] == "Async response demo interrupted response"
    assert event["log_level"] == LogLevel.warn
    assert event["log_failure"].check(ConnectionDone)
    assert event["saved_seconds"] == pytest.approx(3.5)


def test_interruptibleLogsNothing():
    """
    Seed 000 is "the most boring demonstration ever": nothing in the logs.
    """
    resource, clock, _ = build(InterruptibleDelayedResource)
    request = get(resource, seconds="5")
    with capturedLogs() as events:
        disconnect(request)
    assert events == []


@pytest.mark.parametrize("cls", NAIVE)
def test_naiveSeedsRunOnAfterTheClientLeft(cls):
    """
    Seeds 001 and 003 do not watch for the client: the work runs to the end
    anyway (counted as wasted), and writes nothing to the closed request.
    """
    resource, clock, stats = build(cls)
    request = get(resource, seconds="2")
    disconnect(request)
    assert len(clock.getDelayedCalls()) == 1
    assert stats.endpoints[cls.endpoint].in_flight == 1
    clock.advance(2)
    assert request.written == [] and not request.finished
    counts = stats.endpoints[cls.endpoint]
    assert (counts.wasted, counts.completed, counts.in_flight) == (1, 0, 0)


BAD_SECONDS = ["", "abc", "-1", "-0.001", "nan", "inf", "-inf", "61", "1e999", "0x10"]


@pytest.mark.parametrize("cls", SEEDS)
@pytest.mark.parametrize("value", BAD_SECONDS)
def test_badSecondsGet400SayingWhatIsAllowed(cls, value):
    """
    An empty, non-numeric, negative, non-finite or too large C{seconds} is
    refused before any work starts.
    """
    resource, clock, stats = build(cls)
    request = get(resource, seconds=value)
    assert request.responseCode == 400
    body = b"".join(request.written).decode()
    assert "seconds must be a number from 0 to 60" in body
    assert clock.getDelayedCalls() == []
    assert stats.endpoints[cls.endpoint].started == 0


def test_badSecondsAsJSON():
    """
    A client that asks for JSON gets the same message as JSON.
    """
    resource, _, _ = build(DelayedResource)
    request = DummyRequest([b""])
    request.args = {b"seconds": [b"100"]}
    request.requestHeaders.setRawHeaders(b"accept", [b"application/json"])
    request.render(resource)
    document = json.loads(b"".join(request.written))
    assert document["status"] == 400
    assert document["detail"] == "seconds must be a number from 0 to 60 (got '100')"


def test_repeatedSecondsIsRefused():
    resource, _, _ = build(DelayedResource)
    request = DummyRequest([b""])
    request.args = {b"seconds": [b"1", b"2"]}
    request.render(resource)
    assert request.responseCode == 400


def test_maximumComesFromSettings():
    """
    The bound is the configured C{max_seconds}: 10 is refused under a
    maximum of 5 and accepted under the default of 60.
    """
    resource, _, _ = build(DelayedResource, max_seconds=5.0, default_seconds=5.0)
    assert get(resource, seconds="10").responseCode == 400
    resource, clock, _ = build(DelayedResource)
    request = get(resource, seconds="10")
    clock.advance(10)
    assert request.finished == 1


def test_zeroSecondsAnswersOnTheNextTurn():
    resource, clock, _ = build(InterruptibleDelayedResource)
    request = get(resource, seconds="0")
    clock.advance(0)
    assert request.finished == 1


def test_streamWritesEachChunkOnTime():
    """
    The first chunk is written at once, the next ones every interval, and
    the request is finished with the last.
    """
    resource, clock, stats = build(StreamingResource)
    request = get(resource, chunks="3", interval="0.5")
    assert request.written == [b"chunk 1 of 3\n"]
    clock.advance(0.499)
    assert len(request.written) == 1
    clock.advance(0.001)
    assert request.written[-1] == b"chunk 2 of 3\n"
    assert not request.finished
    clock.advance(0.5)
    assert request.written[-1] == b"chunk 3 of 3\n"
    assert request.finished == 1
    assert clock.getDelayedCalls() == []
    assert stats.endpoints["stream"].completed == 1


def test_streamStopsWhenTheClientLeaves():
    resource, clock, stats = build(StreamingResource)
    request = get(resource, chunks="10", interval="1")
    clock.advance(1)
    clock.advance(1)
    disconnect(request)
    assert clock.getDelayedCalls() == []
    clock.advance(20)
    assert len(request.written) == 3
    assert stats.endpoints["stream"].cancelled == 1


@pytest.mark.parametrize(
    "args",
    [
        {"chunks": "0"},
        {"chunks": "1.5"},
        {"chunks": "1001"},
        {"interval": "-1"},
        {"interval": "11"},
        {"interval": "nan"},
    ],
)
def test_streamRefusesBadParameters(args):
    resource, clock, stats = build(StreamingResource)
    request = get(resource, **args)
    assert request.responseCode == 400
    assert clock.getDelayedCalls() == []
    assert stats.endpoints["stream"].started == 0


def test_statsResourceReportsEveryEndpointAndTotals():
    resource, clock, stats = build(InterruptibleDelayedResource)
    get(resource, seconds="1")
    disconnect(get(resource, seconds="1"))
    get(resource, seconds="1")
    clock.advance(1)
    request = get(StatsResource(stats))
    document = json.loads(b"".join(request.written))
    assert set(document["endpoints"]) == {e.decode() for e in ENDPOINTS}
    assert document["endpoints"]["interruptible"] == {
        "started": 3,
        "completed": 2,
        "cancelled": 1,
        "wasted": 0,
        "in_flight": 0,
    }
    assert document["totals"]["started"] == 3


def test_statsAreExposedAsPrometheusMetrics():
    from prometheus_client import CollectorRegistry, generate_latest

    resource, clock, stats = build(InterruptibleDelayedResource)
    registry = CollectorRegistry()
    registry.register(stats)
    disconnect(get(resource, seconds="1"))
    get(resource, seconds="1")
    text = generate_latest(registry).decode()
    assert 'async_delayed_ended_total{endpoint="interruptible",outcome="cancelled"} 1.0' in text
    assert 'async_delayed_in_flight{endpoint="interruptible"} 1.0' in text


def test_indexNamesEverySeed():
    request = get(IndexResource(Settings()))
    document = json.loads(b"".join(request.written))
    seeds = {e["seed"] for e in document["endpoints"].values()}
    assert seeds == {"000", "001", "002", "003"}


# Over loopback: the real service's answers, as a client reads them.


@pytest.fixture(scope="module")
def asyncService():
    from webstack.localstack import LocalStack

    with LocalStack(ephemeral=True, backends=("async",)) as stack:
        yield stack.services["async"].port


def answerHead(port, path: bytes) -> tuple[bytes, bytes]:
    """
    The status line and header block of a GET (names lower-cased), and the
    body as sent (with its chunked framing, if any).
    """
    from .support import rawGet

    answer = rawGet(port, path)
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.lower(), body


@pytest.mark.integration
@pytest.mark.parametrize("endpoint", [b"delay", b"deferred", b"interruptible", b"logged"])
def test_aDelayedBodyGoesWithItsLengthNotChunked(asyncService, endpoint):
    head, body = answerHead(asyncService, b"/async/" + endpoint + b"?seconds=0")
    assert head.startswith(b"http/1.1 200")
    assert b"\r\ncontent-length: %d\r\n" % len(BODY) in head + b"\r\n"
    assert b"transfer-encoding" not in head
    assert body == BODY


@pytest.mark.integration
@pytest.mark.parametrize(
    "path",
    [b"/async/delay?seconds=x", b"/async/nothing-here", b"/async/", b"/async/stats", b"/healthz", b"/readyz", b"/metrics"],
)
def test_everyOtherOnePieceAnswerGoesWithItsLength(asyncService, path):
    head, body = answerHead(asyncService, path)
    assert b"transfer-encoding" not in head
    [length] = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.startswith(b"content-length:")]
    assert int(length) == len(body) > 0


@pytest.mark.integration
def test_aStreamIsStillChunked(asyncService):
    head, body = answerHead(asyncService, b"/async/stream?chunks=2&interval=0")
    assert b"\r\ntransfer-encoding: chunked" in head
    assert b"content-length" not in head
    assert b"chunk 1 of 2\n" in body and body.endswith(b"0\r\n\r\n")
