# -*- test-case-name: tests.test_writes -*-
"""
Sending without asking epoll first.

Twisted's TCP transports never send in C{write()}: they queue the data,
register the socket for writability (C{epoll_ctl}), send when the next
C{epoll_wait} says it is writable (it nearly always is), then unregister it
(C{epoll_ctl}).  That coalesces the pieces a protocol writes during a turn of
the loop (a response's head, its body) into one C{send}, which is worth
keeping; the two system calls and the extra turn around it are not.  Two
ways around them, each measured here in one run beside the code without
it:

  - L{writeNow}, for a message already in one piece (the front's upstream
    request, head and body serialized together): send it at once.  15-20 µs
    less CPU per proxied request.
  - L{CoalescingServer}, for every server connection (L{coalesceWrites} on
    a listening port): a write queues as before, and once the turn's events
    are handled (once per turn, however many connections wrote: through
    the webstack reactor's C{callAtEndOfTurn}, on another reactor a
    C{callLater(0)}), every transport that wrote sends its queue.  8% less
    CPU per request in the front, 6% in a backend.

Only a socket whose kernel buffer is full is registered with epoll, exactly as
before, so order, back-pressure, producers, C{loseConnection} and errors
behave as Twisted's own.  Both lean on a few of the TCP transport's
attributes that are not public API (its queue, C{_aborting}) and on the
reactor's C{_disconnectSelectable}; Twisted is pinned in the lock, and
C{tests/test_writes.py} exercises them over real sockets, so an upgrade that
moves them fails there.
"""

from __future__ import annotations

import sys
import weakref

from twisted.internet import tcp
from twisted.python import log


def writeNow(transport, data: bytes) -> None:
    """
    Write C{data} to C{transport}: at once if it is a connected TCP transport
    with nothing queued, otherwise (or for what the kernel did not take)
    through its C{write}, so order, back-pressure and error reporting stay
    the transport's own.
    """
    if (
        data
        and isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport._aborting
        and not transport.TLS
        and not transport._tempDataBuffer
        and len(transport.dataBuffer) <= transport.offset
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # Full (EAGAIN) or broken: the queued write finds out which.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


class _EndOfTurn:
    """
    The transports of one reactor that wrote during the current turn of its
    loop, sent once the turn's events are handled.
    """

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self._waiting: list[CoalescingServer] = []
        self._scheduled = False
        # The webstack reactor's hook (LeanEPollReactor.callAtEndOfTurn);
        # on another, a timer of no delay: the next turn's first call.
        self._atEnd = getattr(reactor, "callAtEndOfTurn", None)

    def add(self, transport: CoalescingServer) -> None:
        self._waiting.append(transport)
        if not self._scheduled:
            self._scheduled = True
            if self._atEnd is not None:
                self._atEnd(self._send)
            else:
                self._reactor.callLater(0, self._send)

    def _send(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        for transport in waiting:
            # One connection's failure (its protocol's connectionLost
            # raising, say) is its own: the reactor would log it and go on
            # to the next event, and so does this.
            try:
                transport._sendQueued()
            except BaseException:
                log.err(None, "sending a connection's queued writes")


_turns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _endOfTurn(reactor) -> _EndOfTurn:
    turn = _turns.get(reactor)
    if turn is None:
        turn = _turns[reactor] = _EndOfTurn(reactor)
    return turn


class CoalescingServer(tcp.Server):
    """
    A server-side TCP transport that sends what a turn of the loop wrote at
    the end of that turn, instead of registering with epoll for it (see the
    module docstring).
    """

    _queuedForTurn = False
    _reading = False

    def startReading(self) -> None:
        # Twisted's channel resumes its transport after every request
        # (HTTPChannel.requestDone), paused or not: through the reactor's
        # addReader, three calls in Python to find it reading already.
        # The reactor's own removeReader on a disconnect leaves this True;
        # nothing reads a disconnected transport again.
        if not self._reading:
            self._reading = True
            self.reactor.addReader(self)

    def stopReading(self) -> None:
        self._reading = False
        self.reactor.removeReader(self)

    _turn = None
    _waitingForWritable = False

    def stopWriting(self) -> None:
        # Only a transport that waits for its socket (below) is registered
        # with the reactor for writing; Twisted's doWrite stops writing
        # after every send, three calls in Python to find it is not.
        if self._waitingForWritable:
            self._waitingForWritable = False
            self.reactor.removeWriter(self)

    def startWriting(self) -> None:
        if self._queuedForTurn:
            return
        self._queuedForTurn = True
        turn = self._turn
        if turn is None:
            # Found once per connection: the weak dictionary's get is
            # Python, and this runs for every response.
            turn = self._turn = _endOfTurn(self.reactor)
        turn.add(self)

    def _sendQueued(self) -> None:
        self._queuedForTurn = False
        if self.disconnected or self._aborting or not self.connected:
            return
        try:
            why = self.doWrite()
        except BaseException:
            why = sys.exc_info()[1]
            log.err()
        if why:
            # What the reactor does with what doWrite returns: closed after
            # a loseConnection, or broken.
            self.reactor._disconnectSelectable(self, why, False)
        elif self._tempDataLen or len(self.dataBuffer) > self.offset:
            # The kernel took only part: wait for the socket, as Twisted does.
            self._waitingForWritable = True
            tcp.Server.startWriting(self)


def coalesceWrites(port) -> None:
    """
    Make the connections C{port} accepts from now on L{CoalescingServer}s:
    a listening L{tcp.Port} (made by C{listenTCP} or C{adoptStreamPort}) on
    a reactor of the epoll/poll/select family; any other port is left as it
    is.
    """
    if (
        isinstance(port, tcp.Port)
        and port.transport is tcp.Server
        and hasattr(port.reactor, "_disconnectSelectable")
    ):
        port.transport = CoalescingServer
