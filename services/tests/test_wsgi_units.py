"""
L{webstack.wsgi.length.withContentLength} in memory: what the server's
C{start_response} is given.
"""

import sys

import pytest

from webstack.wsgi.length import withContentLength


class Server:
    """
    The server side: what start_response was given, what was written.
    """

    def __init__(self):
        self.started = []
        self.written = []

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None and self.written:
            raise exc_info[1].with_traceback(exc_info[2])
        self.started.append((status, headers))
        return self.written.append


def serve(application):
    server = Server()
    body = withContentLength(application)({}, server.start_response)
    for piece in body:
        server.written.append(piece)
    return server


def test_aListGetsTheLengthOfAllItsPieces():
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, ", b"world!"]

    server = serve(application)
    assert server.started == [("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])]
    assert server.written == [b"Hello, ", b"world!"]


@pytest.mark.parametrize(
    "status, headers",
    [
        ("200 OK", [("content-length", "2")]),
        ("200 OK", [("Transfer-Encoding", "chunked")]),
        ("204 No Content", []),
        ("304 Not Modified", []),
    ],
)
def test_noLengthIsAddedWhereItIsSaidOrMustNotBe(status, headers):
    def application(environ, start_response):
        start_response(status, headers)
        return [b"ok"] if status.startswith("200") else []

    assert serve(application).started == [(status, headers)]


def test_aGeneratorOrAWriteGoesAsBefore():
    def generated(environ, start_response):
        # A generator: start_response runs when the server iterates it.
        start_response("200 OK", [])
        yield b"a"
        yield b"b"

    def imperative(environ, start_response):
        write = start_response("200 OK", [])
        write(b"first")
        return [b"second"]

    assert serve(generated).started == [("200 OK", [])]
    server = serve(imperative)
    assert server.started == [("200 OK", [])]
    assert server.written == [b"first", b"second"]


def test_anErrorPageReplacesWhatWasHeld():
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    assert serve(application).started == [
        ("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    ]


# Issue 9, attack #6: calls bounded, skipped when nobody waits, a stop that
# neither runs the backlog nor blocks the reactor.  A real ThreadPool with
# one thread, held by threading.Event (every wait bounded); the reactor is a
# Clock whose callFromThread queues the call for the test's thread to run,
# as a reactor would on its own.

import json
import queue
import threading
import time

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.test.requesthelper import DummyRequest

from webstack.wsgi.calls import BoundedCalls
from webstack.wsgi.demo import makeApplication
from webstack.wsgi.pool import DaemonThreadPool, PoolCollector, ThreadPoolService
from webstack.wsgi.resource import BoundedWSGIResource, Rejections

WAIT = 5.0


class ThreadedClock(Clock):
    """
    A Clock that also takes calls from other threads, run on the test's
    thread by L{runFromThreads}.
    """

    def __init__(self):
        super().__init__()
        self.fromThreads = queue.Queue()

    def callFromThread(self, f, *args, **kwargs):
        self.fromThreads.put((f, args, kwargs))

    def runFromThreads(self, count):
        for _ in range(count):
            f, args, kwargs = self.fromThreads.get(timeout=WAIT)
            f(*args, **kwargs)


class Held:
    """
    A call that says when it starts and returns only when released.
    """

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.ran = False

    def __call__(self):
        self.ran = True
        self.started.set()
        assert self.release.wait(WAIT), "never released"


def ran():
    """
    A call that only notes that it ran.
    """

    def call():
        call.ran = True

    call.ran = False
    return call


def skipped(registry, reason):
    return registry.get_sample_value("wsgi_skipped_total", {"reason": reason})


@pytest.fixture
def onePool():
    pool = ThreadPool(1, 1, name="test")
    pool.start()
    yield pool
    pool.stop()


def test_aCallWhoseClientLeftWhileItWaitedIsNotRun(onePool):
    reactor, registry = ThreadedClock(), CollectorRegistry()
    calls = BoundedCalls(reactor, onePool, queueMax=5, registry=registry)
    first, second, third = Held(), ran(), ran()
    gone = []
    calls.run(first, lambda: True)
    assert first.started.wait(WAIT)
    calls.run(second, lambda: not gone)
    calls.run(third, lambda: True)
    gone.append(True)  # the second's client leaves while it waits
    first.release.set()
    reactor.runFromThreads(3)
    assert (second.ran, third.ran) == (False, True)
    assert skipped(registry, "client_gone") == 1
    assert skipped(registry, "stopping") == 0
    assert calls.admitted == 0


def test_theBoundCountsTheRunningAndTheWaiting(onePool):
    reactor = ThreadedClock()
    calls = BoundedCalls(reactor, onePool, queueMax=2, registry=CollectorRegistry())
    assert calls.limit == 3
    held = [Held() for _ in range(3)]
    for call in held:
        assert calls.hasRoom()
        calls.run(call, lambda: True)
    assert not calls.hasRoom()
    held[0].release.set()
    reactor.runFromThreads(1)
    assert calls.hasRoom()
    for call in held[1:]:
        call.release.set()
    reactor.runFromThreads(2)
    assert calls.admitted == 0


def test_noQueueAtAllIsAllowed(onePool):
    calls = BoundedCalls(ThreadedClock(), onePool, queueMax=0, registry=CollectorRegistry())
    assert calls.limit == 1
    with pytest.raises(ValueError, match="queueMax must be at least 0"):
        BoundedCalls(ThreadedClock(), onePool, queueMax=-1)


def test_closingSkipsWhatWaitsAndFiresOnceIdle(onePool):
    reactor, registry = ThreadedClock(), CollectorRegistry()
    calls = BoundedCalls(reactor, onePool, queueMax=5, registry=registry)
    running, waiting = Held(), [ran(), ran()]
    calls.run(running, lambda: True)
    assert running.started.wait(WAIT)
    for call in waiting:
        calls.run(call, lambda: True)
    idle = calls.close()
    assert not idle.called
    assert not calls.hasRoom()
    running.release.set()
    reactor.runFromThreads(3)
    assert idle.called
    assert [call.ran for call in waiting] == [False, False]
    assert skipped(registry, "stopping") == 2
    assert calls.close().called  # nothing left: at once


def stopping(reactor, pool, drainTimeout=10.0):
    """
    A started ThreadPoolService on C{pool}, its log lines in C{.events}.
    """
    calls = BoundedCalls(reactor, pool, queueMax=5, registry=CollectorRegistry())
    service = ThreadPoolService(reactor, calls, drainTimeout)
    events = []
    service.log = Logger(observer=events.append)
    service.events = events
    service.startService()
    return service


def test_theStopWaitsForRunningCallsWithoutBlockingTheReactor():
    reactor = ThreadedClock()
    service = stopping(reactor, DaemonThreadPool(1, 1, name="test"))
    held, waiting = Held(), ran()
    service.calls.run(held, lambda: True)
    assert held.started.wait(WAIT)
    service.calls.run(waiting, lambda: True)
    began = time.monotonic()
    d = service.stopService()
    assert time.monotonic() - began < 1.0  # returned at once, nothing joined
    assert not d.called
    reactor.advance(5)
    held.release.set()
    reactor.runFromThreads(2)
    assert d.called
    assert not waiting.ran
    assert not any(t.is_alive() for t in service.pool.threads)
    [stopped] = [e for e in service.events if e.get("event") == "wsgi_pool_stopped"]
    assert (stopped["client_gone"], stopped["stopping"]) == (0, 1)


def test_aCallStillRunningAtTheDeadlineIsLeftBehind():
    """
    The calls get C{drainTimeout} from the moment the whole stop began (the
    runtime drains first), plus C{graceSeconds}; a call still running then
    is left to end with the process (daemon threads), and said so.
    """
    reactor = ThreadedClock()
    service = stopping(reactor, DaemonThreadPool(1, 1, name="test"), drainTimeout=10.0)
    held = Held()
    service.calls.run(held, lambda: True)
    assert held.started.wait(WAIT)
    service.stopBegins()  # the reactor's shutdown began: the drain runs first
    reactor.advance(8)
    d = service.stopService()
    reactor.advance(2 + service.graceSeconds - 0.001)
    assert not d.called
    reactor.advance(0.001)
    assert d.called
    [abandoned] = [e for e in service.events if e.get("event") == "wsgi_calls_abandoned"]
    assert abandoned["running"] == 1
    assert all(t.daemon for t in service.pool.threads)
    held.release.set()
    for thread in service.pool.threads:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_theDeadlineIsTheStopsOwnWhenNoShutdownWasSeen():
    reactor = ThreadedClock()
    service = stopping(reactor, DaemonThreadPool(1, 1, name="test"), drainTimeout=3.0)
    held = Held()
    service.calls.run(held, lambda: True)
    assert held.started.wait(WAIT)
    reactor.advance(100)
    d = service.stopService()
    reactor.advance(3 + service.graceSeconds - 0.001)
    assert not d.called
    reactor.advance(0.001)
    assert d.called
    held.release.set()


def test_theRuntimesDrainStartsTheCallsDeadline():
    """
    Built by the runtime, the service's pool counts C{drain_timeout} from
    when the runtime's drain begins (its drain hook), not from its own stop
    after the drain: a drain of 8 s leaves the calls 2 s, plus the grace.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.error import ConnectionDone
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    from webstack.runtime.plugin import buildService
    from webstack.runtime.settings import RuntimeSettings
    from webstack.wsgi import app as wsgiApp

    reactor = ThreadedClock()
    service = buildService(
        wsgiApp,
        RuntimeSettings(drain_timeout=10.0),
        wsgiApp.Settings(threads_min=1, threads_max=1),
        reactor,
        endpoint=object(),  # never listens: the site is driven in memory
    )
    [pool] = [child for child in service if isinstance(child, ThreadPoolService)]
    pool.startService()
    held = Held()
    pool.calls.run(held, lambda: True)
    assert held.started.wait(WAIT)
    # A client connection that takes 8 s to close once the drain asks it to.
    client = service.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    client.makeConnection(StringTransport())
    stopped = []
    service.stopService().addCallback(stopped.append)
    reactor.advance(8)
    client.connectionLost(Failure(ConnectionDone()))
    reactor.advance(2 + pool.graceSeconds - 0.001)
    assert stopped == []
    reactor.advance(0.001)
    assert stopped == [None]
    held.release.set()
    for thread in pool.pool.threads:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_thePoolsGaugesIncludeTheQueueBound():
    pool = ThreadPool(0, 4, name="test")
    registry = CollectorRegistry()
    registry.register(PoolCollector(BoundedCalls(Clock(), pool, 7, registry)))
    assert registry.get_sample_value("wsgi_pool_queue_max") == 7
    assert registry.get_sample_value("wsgi_pool_max_threads") == 4


def refusalOf(calls, registry):
    resource = BoundedWSGIResource(Clock(), calls, makeApplication(1), Rejections(registry))
    request = DummyRequest([b""])
    request.requestHeaders.setRawHeaders(b"accept", [b"application/json"])
    body = resource.render(request)
    return request, json.loads(body)


def test_aFullQueueIsRefused503WithRetryAfter():
    registry = CollectorRegistry()
    calls = BoundedCalls(Clock(), ThreadPool(0, 1, name="test"), 0, registry)
    calls.admitted = 1  # one call running, no room to wait
    request, body = refusalOf(calls, registry)
    assert request.responseCode == 503
    assert request.responseHeaders.getRawHeaders(b"retry-after") == [b"1"]
    assert body["status"] == 503 and "busy" in body["detail"]
    assert registry.get_sample_value("wsgi_rejected_total", {"reason": "queue_full"}) == 1


def test_aRequestWhileStoppingIsRefused503():
    registry = CollectorRegistry()
    calls = BoundedCalls(Clock(), ThreadPool(0, 1, name="test"), 5, registry)
    calls.close()
    request, body = refusalOf(calls, registry)
    assert request.responseCode == 503
    assert "stopping" in body["detail"]
    assert registry.get_sample_value("wsgi_rejected_total", {"reason": "stopping"}) == 1


def slowPage(seconds, gone=None):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/slow", "QUERY_STRING": f"seconds={seconds}"}
    if gone is not None:
        environ["webstack.client_gone"] = gone
    server = Server()
    body = makeApplication(30.0)(environ, server.start_response)
    return server.started[0][0], b"".join(body)


@pytest.mark.parametrize("seconds", ["nan", "inf", "-inf", "1e999", "-1", "30.001", "x"])
def test_theSlowPageCannotBeMadeToHoldAThreadPastItsBound(seconds):
    status, body = slowPage(seconds)
    assert status.startswith("400")
    assert b"from 0 to 30" in body


def test_theSlowPageStopsWhenItsClientHasGone():
    gone = threading.Event()
    gone.set()
    began = time.monotonic()
    status, _ = slowPage(30, gone)
    assert time.monotonic() - began < 1.0
    assert status.startswith("499")
    assert slowPage(0, threading.Event())[0].startswith("200")
