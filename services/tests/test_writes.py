"""
L{webstack.runtime.writes.writeNow} over a real loopback connection, in a
process of its own (the reactor runs once per process): what goes out at
once and what is queued behind a full socket arrive whole and in order.
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
    env = dict(os.environ, PYTHONPATH=str(Path(webstack.__file__).parents[1]))
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.stdout.strip() == "True", result.stderr


def test_aNonTCPTransportIsWrittenToAsUsual():
    transport = StringTransport()
    writeNow(transport, b"hello")
    writeNow(transport, b" world")
    assert transport.value() == b"hello world"
