"""
L{webstack.runtime.writes} over real loopback connections, each program in a
process of its own (the reactor runs once per process): what goes out at
once, at the end of a turn, or queued behind a full socket arrives whole and
in order; C{loseConnection} still sends everything first, C{abortConnection}
still drops it, and a slow reader still pauses a streaming producer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from twisted.internet.testing import StringTransport

import webstack
from webstack.runtime.writes import writeNow

def _run(program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """
    Run C{program} in a Python of its own (the reactor runs once per
    process), with webstack importable.
    """
    env = dict(os.environ, PYTHONPATH=str(Path(webstack.__file__).parents[1]))
    return subprocess.run(
        [sys.executable, "-c", program, *args], capture_output=True, text=True,
        timeout=timeout, env=env,
    )


def _results(program: str) -> tuple[dict, str]:
    """
    What C{program} printed as its last line, C{sorted(results.items())},
    as a dict, and its stderr.
    """
    result = _run(program)
    return dict(eval(result.stdout.strip() or "[]")), result.stderr


PROGRAM = textwrap.dedent(
    """
    import hashlib, sys
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory, Factory, Protocol
    from webstack.runtime.writes import writeNow

    # Bigger than any loopback socket buffer: the kernel takes a part, the
    # transport queues the rest.
    pieces = [b"a" * 100, bytes(range(256)) * 40000, b"z" * 10, b"end"]
    expected = hashlib.sha256(b"".join(pieces)).hexdigest()

    class Sink(Protocol):
        def connectionMade(self):
            self.digest, self.count = hashlib.sha256(), 0
        def dataReceived(self, data):
            self.digest.update(data)
            self.count += len(data)
            if self.count == sum(map(len, pieces)):
                print(self.digest.hexdigest() == expected, flush=True)
                reactor.stop()

    class Source(Protocol):
        def connectionMade(self):
            for piece in pieces:
                writeNow(self.transport, piece)

    port = reactor.listenTCP(0, Factory.forProtocol(Sink), interface="127.0.0.1")
    reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(Source))
    reactor.callLater(20, reactor.stop)
    reactor.run()
    """
)


@pytest.mark.integration
def test_bytesArriveWholeAndInOrder():
    result = _run(PROGRAM)
    assert result.stdout.strip() == "True", result.stderr


def test_aNonTCPTransportIsWrittenToAsUsual():
    transport = StringTransport()
    writeNow(transport, b"hello")
    writeNow(transport, b" world")
    assert transport.value() == b"hello world"


SERVER = textwrap.dedent(
    """
    import hashlib, socket, sys
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol
    from webstack.runtime.writes import CoalescingServer, coalesceWrites

    pieces = [b"head ", bytes(range(256)) * 40000, b" tail"]
    results = {}

    class Writer(Protocol):
        def connectionMade(self):
            results["transport"] = type(self.transport).__name__
            mode = self.factory.modes.pop(0)
            for piece in pieces:
                self.transport.write(piece)
            if mode == "close":
                self.transport.loseConnection()
            elif mode == "abort":
                self.transport.abortConnection()
            elif mode == "produce":
                self.produced = 0
                self.transport.registerProducer(self, True)
                self.resumeProducing()

        # A streaming producer: writes until paused, 200 times 64 KiB.
        def resumeProducing(self):
            self.paused = False
            while not self.paused and self.produced < 200:
                self.produced += 1
                self.transport.write(b"p" * 65536)
            if self.produced == 200:
                self.transport.unregisterProducer()
                self.transport.loseConnection()

        def pauseProducing(self):
            self.paused = True
            results["paused"] = results.get("paused", 0) + 1

        def stopProducing(self):
            pass

    factory = Factory.forProtocol(Writer)
    factory.modes = ["close", "abort", "produce"]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    coalesceWrites(port)
    address = ("127.0.0.1", port.getHost().port)

    def read(slow=False):
        data = b""
        try:
            # Inside the try: under load, the server can accept and abort
            # before connect() returns, which then fails with the reset.
            s = socket.create_connection(address, timeout=10)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            data += b"<" + type(e).__name__.encode() + b">"
        return data

    def client():
        import time
        whole = b"".join(pieces)
        closed = read()
        results["close"] = closed == whole
        aborted = read()
        results["abort"] = len(aborted) < len(whole)
        s = socket.create_connection(address, timeout=10)
        time.sleep(0.3)  # let the producer fill the socket and be paused
        total = 0
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
        results["produce"] = total == len(whole) + 200 * 65536
        reactor.callFromThread(reactor.stop)

    reactor.callInThread(client)
    reactor.callLater(30, reactor.stop)
    reactor.run()
    print(sorted(results.items()))
    """
)


@pytest.mark.integration
def test_aCoalescingServerSendsLikeTwistedDoes():
    results, stderr = _results(SERVER)
    assert results.get("transport") == "CoalescingServer", stderr
    assert results["close"] is True
    assert results["abort"] is True
    assert results["produce"] is True
    assert results.get("paused", 0) >= 1


# One connection whose protocol fails while its queue is sent must not keep
# the others of that turn from sending.
COALESCE = textwrap.dedent(
    """
    import socket, sys
    if sys.argv[1] == "coalesce-webstack":
        # The services' reactor: the turn's writes are sent through its
        # callAtEndOfTurn, and these are a timer's (before it waits again).
        from webstack.runtime.reactor import install
        install()
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol
    from webstack.runtime.writes import coalesceWrites

    protocols = []

    class P(Protocol):
        def connectionMade(self):
            protocols.append(self)
            if len(protocols) == 2:
                reactor.callLater(0.1, fire)
        def connectionLost(self, reason):
            if self is protocols[0]:
                raise RuntimeError("a protocol's connectionLost failed")

    def fire():
        a, b = protocols
        a.transport.write(b"bye")
        a.transport.loseConnection()
        b.transport.write(b"hello")

    port = reactor.listenTCP(0, Factory.forProtocol(P), interface="127.0.0.1")
    if sys.argv[1].startswith("coalesce"):
        coalesceWrites(port)
    address = ("127.0.0.1", port.getHost().port)
    result = {}

    def client():
        s1 = socket.create_connection(address, timeout=3)
        s2 = socket.create_connection(address, timeout=3)
        try:
            result["b"] = s2.recv(100)
        except OSError as e:
            result["b"] = type(e).__name__
        reactor.callFromThread(reactor.stop)

    reactor.callInThread(client)
    reactor.callLater(10, reactor.stop)
    reactor.run()
    print(result["b"])
    """
)



def _coalesce(mode):
    return _run(COALESCE, mode, timeout=30).stdout.strip()


@pytest.mark.integration
def test_oneFailingConnectionDoesNotStrandTheOthersInItsTurn():
    assert _coalesce("stock") == "b'hello'"  # Twisted's own transport
    assert _coalesce("coalesce") == "b'hello'"
    assert _coalesce("coalesce-webstack") == "b'hello'"


# A CoalescingServer paused for reading reads again when resumed; resuming
# one that is reading asks nothing of the reactor (Twisted's channel resumes
# its transport after every request).
PAUSED = textwrap.dedent(
    """
    import socket
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol
    from webstack.runtime.writes import coalesceWrites

    added = []
    addReader = reactor.addReader
    reactor.addReader = lambda reader: (added.append(reader), addReader(reader))
    result = {}

    class P(Protocol):
        def connectionMade(self):
            self.transport.pauseProducing()
            reactor.callLater(0.3, self.resume)
        def resume(self):
            result["before"] = result.get("data", b"")
            before = len(added)
            self.transport.resumeProducing()
            self.transport.resumeProducing()
            result["adds"] = len(added) - before
        def dataReceived(self, data):
            result["data"] = result.get("data", b"") + data
            self.transport.resumeProducing()
            self.transport.write(data)

    port = reactor.listenTCP(0, Factory.forProtocol(P), interface="127.0.0.1")
    coalesceWrites(port)

    def client():
        s = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        s.sendall(b"hello")
        try:
            result["echo"] = s.recv(100)
        except OSError as e:
            result["echo"] = type(e).__name__
        reactor.callFromThread(reactor.stop)

    reactor.callInThread(client)
    reactor.callLater(10, reactor.stop)
    reactor.run()
    print(sorted(result.items()))
    """
)


@pytest.mark.integration
def test_aPausedCoalescingServerReadsOnceResumedAndAResumeWhileReadingCostsNothing():
    results, stderr = _results(PAUSED)
    assert results.get("before") == b"", stderr
    assert results["adds"] == 1
    assert results["echo"] == b"hello"


# A CoalescingServer that waited for its socket to take a large write is
# registered for writing until all of it is sent, and no longer after.
WRITABLE = textwrap.dedent(
    """
    import socket, time
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol
    from webstack.runtime.writes import coalesceWrites

    size = 8 * 1024 * 1024
    result = {}

    protocols = []

    class P(Protocol):
        def connectionMade(self):
            protocols.append(self)
            self.transport.write(b"x" * size)
            reactor.callLater(0.2, self.look, "waiting")
        def look(self, when):
            result[when] = self.transport in reactor.getWriters()

    port = reactor.listenTCP(0, Factory.forProtocol(P), interface="127.0.0.1")
    coalesceWrites(port)

    def client():
        s = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        time.sleep(0.5)
        got = 0
        while got < size:
            got += len(s.recv(1 << 20))
        result["received"] = got
        time.sleep(0.2)
        reactor.callFromThread(lambda: (protocols[0].look("sent"), reactor.stop()))

    reactor.callInThread(client)
    reactor.callLater(20, reactor.stop)
    reactor.run()
    print(sorted(result.items()))
    """
)


@pytest.mark.integration
def test_aCoalescingServerWaitsForItsSocketOnlyWhileItHasSomethingToSend():
    results, stderr = _results(WRITABLE)
    assert results.get("received") == 8 * 1024 * 1024, stderr
    assert results["waiting"] is True
    assert results["sent"] is False


class _Queued:
    """
    Stands for a transport that wrote this turn: notes when it is sent.
    """

    def __init__(self, sent: list) -> None:
        self._sent = sent

    def _sendQueued(self) -> None:
        self._sent.append(self)


def test_aTurnsWritesAreSentWithoutATimerOnTheWebstackReactor():
    from twisted.internet.task import Clock

    from webstack.runtime.reactor import LeanEPollReactor
    from webstack.runtime.writes import _endOfTurn

    sent: list = []
    first, second = _Queued(sent), _Queued(sent)
    reactor = LeanEPollReactor()
    turn = _endOfTurn(reactor)
    turn.add(first)
    turn.add(second)
    assert reactor.getDelayedCalls() == []  # no timer on the heap
    reactor.doIteration(0)
    assert sent == [first, second]
    # On another reactor: one timer of no delay for the turn.
    clock = Clock()
    turn = _endOfTurn(clock)
    turn.add(first)
    turn.add(second)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [0]
    clock.advance(0)
    assert sent == [first, second, first, second]
