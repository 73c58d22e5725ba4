"""
The reactor the services run on (L{webstack.runtime.reactor}): found by
twistd as C{--reactor=webstack}, serving real connections, and keeping its
loop going past an error that escapes a read or a write.
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
