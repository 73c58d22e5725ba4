"""
The reactor the services run on (L{webstack.runtime.reactor}): found by
twistd as C{--reactor=webstack}, serving real connections, keeping its
loop going past an error that escapes a read or a write, and running the
calls asked for at the end of a turn before it waits again.
"""

import socket
import time

from twisted.application.reactors import getReactorTypes
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher

from webstack.runtime.reactor import LeanEPollReactor


def test_twistdFindsItAsWebstack():
    found = {r.shortName: r for r in getReactorTypes()}
    assert found["webstack"].moduleName == "webstack.runtime.reactor"


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class BrokenOnClose(Echo):
    """
    Raises from C{connectionLost}: the reactor calls it from its own
    disconnection handling, outside the read's guard.
    """

    def connectionLost(self, reason):
        raise RuntimeError("broken connectionLost")


def serve(reactor, protocol, clients, until=lambda: True):
    """
    Listen with C{protocol} on C{reactor}; run the blocking C{clients(port)}
    in a thread while the reactor runs, then wait (5 s at most) for
    C{until()}; return what C{clients} returned.
    """
    port = reactor.listenTCP(0, Factory.forProtocol(protocol), interface="127.0.0.1")
    outcome = {}

    def run():
        try:
            outcome["value"] = clients(port.getHost().port)
            deadline = time.monotonic() + 5
            while not until() and time.monotonic() < deadline:
                time.sleep(0.01)
        except BaseException as e:
            outcome["error"] = e
        finally:
            reactor.callFromThread(reactor.stop)

    reactor.callWhenRunning(reactor.callInThread, run)
    timeout = reactor.callLater(20, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if timeout.active():
        timeout.cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def echoOnce(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        return s.recv(100)


def test_itServesRealConnections():
    answers = serve(
        LeanEPollReactor(),
        Echo,
        lambda port: [echoOnce(port, b"one %d" % n) for n in range(20)],
    )
    assert answers == [b"one %d" % n for n in range(20)]


def test_anErrorOutsideTheReadsGuardIsLoggedAndTheLoopGoesOn():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        answers = serve(
            LeanEPollReactor(),
            BrokenOnClose,
            lambda port: [echoOnce(port, b"first"), echoOnce(port, b"second")],
            # The reactor sees the second close after the client has made
            # it: stop only once both are handled (or after 5 s).
            until=lambda: sum("log_failure" in e for e in events) >= 2,
        )
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert answers == [b"first", b"second"]
    failures = [e for e in events if "log_failure" in e]
    # Caught and logged where the event was handled, as callWithLogger did,
    # not by the reactor's main loop after the rest of that poll was dropped.
    assert [e["log_namespace"] for e in failures if e["log_failure"].check(RuntimeError)] == [
        "webstack.runtime.reactor"
    ] * 2, failures  # one per connection closed


class Reader:
    """
    The reading end of a socket pair, registered with a reactor: each
    read is noted in C{log}, then C{then(data)} runs.
    """

    def __init__(self, reactor, log, name, then=lambda data: None):
        self.here, self.there = socket.socketpair()
        self.here.setblocking(False)
        self.reactor, self.log, self.name, self.then = reactor, log, name, then
        reactor.addReader(self)

    def fileno(self):
        return self.here.fileno()

    def logPrefix(self):
        return self.name

    def doRead(self):
        data = self.here.recv(100)
        self.log.append(("read", self.name))
        self.then(data)

    def connectionLost(self, reason):
        pass

    def close(self):
        self.reactor.removeReader(self)
        self.here.close()
        self.there.close()


def test_endOfTurnCallsRunOnceTheTurnsReadyDescriptorsAreHandled():
    reactor = LeanEPollReactor()
    log = []
    readers = [
        Reader(reactor, log, name, lambda data, name=name: reactor.callAtEndOfTurn(
            lambda: log.append(("end", name))))
        for name in "abc"
    ]
    try:
        for reader in readers:
            reader.there.send(b"x")  # all three ready before the poll
        reactor.doIteration(0)
        assert sorted(log[:3]) == [("read", "a"), ("read", "b"), ("read", "c")]
        assert sorted(log[3:]) == [("end", "a"), ("end", "b"), ("end", "c")]
        assert len(log) == 6
        reactor.doIteration(0)
        assert len(log) == 6  # each once
    finally:
        for reader in readers:
            reader.close()


def assertSentWithoutWaiting(schedule, guard=5.0):
    """
    Run a L{LeanEPollReactor} on which C{schedule(reactor, send)} arranged
    for C{send()} (a byte to a reader of its own) to be called, until that
    byte is read; fail if the reactor waited for the C{guard} instead.
    """
    reactor = LeanEPollReactor()
    reader = Reader(reactor, [], "r", then=lambda data: reactor.stop())
    guarded = []
    reactor.callLater(guard, lambda: (guarded.append(True), reactor.stop()))
    schedule(reactor, lambda: reader.there.send(b"x"))
    started = time.monotonic()
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        reader.close()
    ran = time.monotonic() - started
    assert not guarded and ran < 2, ran


def test_aCallAskedForByATimerRunsBeforeTheReactorWaits():
    # The timer's call sends the byte the reactor waits for: run only after
    # the next wait, it would wait for the guard.
    assertSentWithoutWaiting(
        lambda reactor, send: reactor.callLater(0.05, reactor.callAtEndOfTurn, send)
    )


def test_aCallAskedForAtTheEndOfATurnRunsWithoutWaiting():
    def schedule(reactor, send):
        reactor.callWhenRunning(
            reactor.callAtEndOfTurn, lambda: reactor.callAtEndOfTurn(send)
        )

    assertSentWithoutWaiting(schedule)


def test_aFailingEndOfTurnCallIsLoggedAndTheOthersRun():
    reactor = LeanEPollReactor()
    events, ran = [], []

    def broken():
        raise RuntimeError("broken at the end of a turn")

    reactor.callAtEndOfTurn(broken)
    reactor.callAtEndOfTurn(lambda: ran.append(True))
    globalLogPublisher.addObserver(events.append)
    try:
        reactor.doIteration(0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert ran == [True]
    failures = [e for e in events if "log_failure" in e]
    assert [e["log_namespace"] for e in failures] == ["webstack.runtime.reactor"]
    assert failures[0]["log_failure"].check(RuntimeError)
