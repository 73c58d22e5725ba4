# -*- test-case-name: tests.test_front_client -*-
"""
The front's HTTP/1.1 client: keep-alive connections to the replicas, one
exchange at a time on each, responses parsed by httptools.

Why not L{twisted.web.client.Agent}: every proxied request crosses this
code, and Agent's generality (endpoints, Deferred chains, a Python parser
that de-chunks line by line, a L{Headers} copy per message, a
L{FileBodyProducer} per body) cost more CPU than the rest of the front
together.  What the front needs is narrow: send a head it has already
serialized, a body it has already read, and stream the response back with
back-pressure.  httptools (llhttp, the parser of Node.js, in C) parses the
response; the connection hands each part to its L{IExchange} as it arrives.

A connection is in one of three states: I{connecting} (the pool waits for
C{connectionMade}), I{busy} (an exchange is attached: its request sent, its
response being read), I{idle} (in the pool).  Only a connection whose
response ended cleanly and that may be kept alive goes back to the pool; any
other ending closes it.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

import httptools
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from webstack.runtime.writes import writeNow

from .failures import ERROR, RESET, UpstreamFailure, connectFailureKind, describeFailure

log = Logger()

MAX_HEAD_BYTES = 65536
"""
The most bytes read from a replica before its response head is complete;
beyond it the exchange fails (502) rather than buffering without bound
(httptools holds a header line whole before it says anything of it).
"""


class _Unasked(Exception):
    """
    A second response began where only one was asked for.
    """


class IExchange(TypingProtocol):
    """
    What a connection reports to the exchange it serves.  (A typing
    protocol rather than a zope interface: it is called on the hot path,
    and nothing adapts to it.)
    """

    def connected(self, connection: UpstreamConnection) -> None:
        """
        The pool has a connection for this exchange: send on it.
        """

    def connectFailed(self, kind: str, reason: Failure) -> None:
        """
        No connection could be made (L{failures.REFUSED} or
        L{failures.CONNECT_TIMEOUT}): nothing was sent.
        """

    def responseHead(
        self,
        code: int,
        phrase: bytes,
        headers: list[tuple[bytes, bytes]],
        names: list[bytes],
    ) -> None:
        """
        The final response head arrived (1xx heads are not passed on).

        @param headers: its header fields, as the replica sent them.
        @param names: their names lowercased, in the same order (made once,
            by the connection, which looks at the framing ones).
        """

    def responseBody(self, data: bytes) -> None:
        """
        Part of the response body.
        """

    def responseEnded(self) -> None:
        """
        The whole response arrived.
        """

    def streaming(self, producer) -> None:
        """
        The response body goes on beyond the data read so far: C{producer}
        (the connection's transport) should follow the client's pace.
        """

    def stoppedStreaming(self) -> None:
        """
        The body has ended (or failed): C{producer} is no longer the
        client's business.
        """

    def upstreamFailed(self, failure: UpstreamFailure, retryable: bool) -> None:
        """
        The exchange failed after its request was sent, before or after its
        response head.

        @param retryable: the connection was a reused keep-alive one that
            closed before a single byte of response: the replica most
            likely closed it as idle just as the request went out, so an
            idempotent request without a body may be sent again on a new
            connection.
        """


class UpstreamConnection(Protocol):
    """
    One keep-alive HTTP/1.1 connection to a replica.

    @ivar exchange: the exchange being served, or L{None} while idle.
    @ivar reused: whether this connection has served an exchange before
        the current one.
    @ivar idleSince: when it last went back to the pool (reactor seconds).
    """

    exchange: IExchange | None = None
    reused = False
    idleSince = 0.0

    def __init__(
        self, pool: UpstreamPool, key: tuple[str, int], waiting: IExchange | None
    ) -> None:
        self._pool = pool
        self.key = key
        self._waiting = waiting
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._phrase = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._headBytes = 0
        self._gotBytes = False
        self._headSeen = False
        self._complete = False
        self._closeAfter = False
        self._eofBody = False
        self._headRequest = False
        self._producing = False

    # Sending.

    def connectionMade(self) -> None:
        # Nagle's algorithm would hold a body written after its head for the
        # head's (delayed) acknowledgement, up to 40 ms.
        self.transport.setTcpNoDelay(True)
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.connected(self)

    def send(
        self, exchange: IExchange, head: bytes, body: bytes | None, isHead: bool
    ) -> None:
        """
        Send one request for C{exchange}: its serialized C{head} and its
        C{body} (already counted in the head's C{Content-Length}).
        """
        self.exchange = exchange
        self._reset()
        self._headRequest = isHead
        writeNow(self.transport, head + body if body else head)

    def abort(self) -> None:
        """
        Drop the exchange and close the connection at once: the replica sees
        its client leave (its C{notifyFinish} errback fires).
        """
        self.exchange = None
        self._pool.lost(self)
        if self.transport is not None:
            self.transport.abortConnection()

    # Receiving.

    def dataReceived(self, data: bytes) -> None:
        if self.exchange is None:
            # Nothing was asked: a replica talking out of turn.  Out of the
            # pool now (connectionLost comes only on the next turn).
            self._pool.lost(self)
            self.transport.abortConnection()
            return
        self._gotBytes = True
        if not self._headSeen:
            self._headBytes += len(data)
            if self._headBytes > MAX_HEAD_BYTES:
                self._fail(ERROR, f"response head over {MAX_HEAD_BYTES} bytes")
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ERROR, "the replica switched protocols")
            return
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Unasked):
                # Bytes beyond the response asked for: it stands, the
                # connection cannot be trusted with another.
                self._closeAfter = True
                self._completed()
            elif isinstance(cause, UpstreamFailure):
                self._fail(cause.kind, cause.detail)
            else:
                log.failure(
                    "forwarding a response from {replica} failed",
                    Failure(cause) if cause is not None else None,
                    replica=f"{self.key[0]}:{self.key[1]}",
                )
                self._fail(ERROR, f"forwarding failed: {cause!r}")
            return
        except httptools.HttpParserError as e:
            if self._complete:
                # Bytes after a complete response (a body sent with a 304,
                # say): the response stands, the connection cannot be
                # trusted with another.
                self._closeAfter = True
                self._completed()
                return
            self._fail(ERROR, f"malformed response: {e}")
            return
        if self.exchange is None:
            return  # aborted while the data was handed over
        if self._complete:
            self._completed()
        elif self._headSeen and not self._producing and self.exchange is not None:
            # The body goes on beyond this read: from now on the client's
            # pace sets this connection's (most responses never get here).
            self._producing = True
            self.exchange.streaming(self.transport)

    # httptools callbacks.

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Unasked()

    def on_status(self, status: bytes) -> None:
        self._phrase += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        code = parser.get_status_code()
        if code < 200:
            if code == 101:
                raise UpstreamFailure(ERROR, "the replica switched protocols")
            # 100 Continue, 103 Early Hints: the final head follows.
            self._phrase = b""
            self._headers = []
            return
        if not parser.should_keep_alive():
            self._closeAfter = True
        headers = self._headers
        names = [name.lower() for name, _ in headers]
        if b"transfer-encoding" in names:
            codings = b",".join(
                value for name, value in self._headers if name.lower() == b"transfer-encoding"
            )
            if [c.strip().lower() for c in codings.split(b",")] != [b"chunked"]:
                # llhttp undoes chunked only: a body still gzip-coded (say)
                # would reach the client with nothing saying so.
                raise UpstreamFailure(ERROR, f"unsupported transfer coding {codings!r}")
        self._eofBody = b"content-length" not in names and b"transfer-encoding" not in names
        self._headSeen = True
        self.exchange.responseHead(code, self._phrase, headers, names)
        if self._headRequest:
            # llhttp does not know the request was HEAD, and would wait for
            # a body of the announced length: the response ends here, and
            # the next one gets a parser of its own.
            self._complete = True
            self._parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None and not self._complete:
            self.exchange.responseBody(body)

    def on_message_complete(self) -> None:
        if self._headSeen:
            self._complete = True

    def _completed(self) -> None:
        exchange = self.exchange
        self.exchange = None
        self.reused = True
        if self._producing:
            self._producing = False
            exchange.stoppedStreaming()
            # The client may have paused this transport just before the end.
            self.transport.resumeProducing()
        if self._closeAfter:
            self.transport.loseConnection()
        else:
            self._pool.release(self)
        exchange.responseEnded()

    def _fail(self, kind: str, detail: str) -> None:
        exchange = self.exchange
        self.exchange = None
        self._pool.lost(self)
        self.transport.abortConnection()
        if exchange is not None:
            exchange.upstreamFailed(UpstreamFailure(kind, detail), retryable=False)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        # The parser holds this protocol's callbacks: a cycle that only the
        # cyclic collector would free, with everything this connection
        # still reaches.  Broken here, reference counting frees it now.
        self._parser = None
        self._pool.lost(self)
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        if self._headSeen and self._eofBody and reason.check(ConnectionDone):
            # A body delimited by the connection's end (no length, not
            # chunked) ends here, complete.
            if self._producing:
                exchange.stoppedStreaming()
            exchange.responseEnded()
            return
        if self._producing:
            exchange.stoppedStreaming()
        retryable = self.reused and not self._gotBytes
        detail = "connection closed" if reason.check(ConnectionDone) else reason.getErrorMessage()
        exchange.upstreamFailed(UpstreamFailure(RESET, detail), retryable=retryable)


class _Connecting(ClientFactory):
    """
    Makes one connection for one exchange.
    """

    noisy = False

    def __init__(self, pool: UpstreamPool, key: tuple[str, int], exchange: IExchange):
        self._pool = pool
        self._key = key
        self._exchange = exchange

    def buildProtocol(self, addr):
        # The reactor's connector keeps this factory as long as the
        # connection lives: it must not keep the first exchange (its
        # request, its client's channel) alive as long.
        connection = UpstreamConnection(self._pool, self._key, self._exchange)
        self._exchange = None
        return connection

    def clientConnectionFailed(self, connector, reason: Failure) -> None:
        if self._exchange is not None:
            self._exchange.connectFailed(connectFailureKind(reason), reason)


class UpstreamPool:
    """
    Keep-alive connections to every replica, the most recently used first.

    Idle connections are kept per replica, at most C{maxIdle} of each, and
    closed once idle longer than C{idleTimeout} (checked when one is taken,
    and by L{sweep}, which the front runs every second: no timer per
    connection or per request).
    """

    def __init__(
        self, reactor, *, connectTimeout: float, maxIdle: int, idleTimeout: float
    ) -> None:
        self._reactor = reactor
        self.connectTimeout = connectTimeout
        self.maxIdle = maxIdle
        self.idleTimeout = idleTimeout
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}

    def acquire(self, host: str, port: int, exchange: IExchange) -> None:
        """
        Give C{exchange} a connection to C{host:port}: an idle one at once
        (C{exchange.connected}), or a new one when it is made (or
        C{exchange.connectFailed}).
        """
        key = (host, port)
        idle = self._idle.get(key)
        if idle:
            oldest = self._reactor.seconds() - self.idleTimeout
            while idle:
                connection = idle.pop()
                if connection.idleSince >= oldest:
                    exchange.connected(connection)
                    return
                connection.transport.loseConnection()
        self._reactor.connectTCP(
            host, port, _Connecting(self, key, exchange), self.connectTimeout
        )

    def release(self, connection: UpstreamConnection) -> None:
        """
        Keep C{connection}, whose exchange ended cleanly, for the next one.
        """
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.maxIdle:
            connection.transport.loseConnection()
            return
        connection.idleSince = self._reactor.seconds()
        idle.append(connection)

    def lost(self, connection: UpstreamConnection) -> None:
        """
        C{connection} closed: forget it if it was idle.
        """
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def sweep(self) -> None:
        """
        Close the connections idle longer than C{idleTimeout}.
        """
        oldest = self._reactor.seconds() - self.idleTimeout
        for idle in self._idle.values():
            stale = [c for c in idle if c.idleSince < oldest]
            for connection in stale:
                idle.remove(connection)
                connection.transport.loseConnection()

    def idleCount(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def closeIdle(self) -> None:
        """
        Close every idle connection (the front is stopping).
        """
        for idle in self._idle.values():
            for connection in list(idle):
                connection.transport.loseConnection()
            idle.clear()


MAX_FETCH_BYTES = 64 * 1024
"""
The largest body L{fetch} keeps unless told otherwise.
"""


class _Fetch:
    """
    A bodiless C{GET} of the front's own (a health probe, a Prometheus
    query) through its L{UpstreamPool}: its answer is the status and the
    body, kept up to C{maxBody} bytes; a longer body closes the connection
    and fails the fetch.  With C{maxBody} L{None} the body is read and
    thrown away, whatever its length (the answer's body is then C{b""}).
    """

    def __init__(self, pool: UpstreamPool, head: bytes, maxBody: int | None) -> None:
        self._pool = pool
        self._head = head
        self._maxBody = maxBody
        self._code = 0
        self._parts: list[bytes] = []
        self._size = 0
        self.connection: UpstreamConnection | None = None
        self.done: Deferred[tuple[int, bytes]] = Deferred(self._cancel)

    def _cancel(self, d) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort()

    def connected(self, connection: UpstreamConnection) -> None:
        if self.done.called:
            self._pool.release(connection)
            return
        self.connection = connection
        connection.send(self, self._head, None, False)

    def connectFailed(self, kind: str, reason: Failure) -> None:
        if not self.done.called:
            self.done.errback(UpstreamFailure(kind, describeFailure(reason)))

    def responseHead(self, code, phrase, headers, names) -> None:
        self._code = code

    def responseBody(self, data: bytes) -> None:
        if self._maxBody is None:
            return
        self._size += len(data)
        if self._size > self._maxBody:
            connection, self.connection = self.connection, None
            if connection is not None:
                connection.abort()
            if not self.done.called:
                self.done.errback(
                    UpstreamFailure(ERROR, f"the answer is over {self._maxBody} bytes")
                )
            return
        self._parts.append(data)

    def streaming(self, producer) -> None:
        pass

    def stoppedStreaming(self) -> None:
        pass

    def responseEnded(self) -> None:
        self.connection = None
        if not self.done.called:
            self.done.callback((self._code, b"".join(self._parts)))

    def upstreamFailed(self, failure: UpstreamFailure, retryable: bool) -> None:
        self.connection = None
        if not self.done.called:
            self.done.errback(failure)


def fetch(
    pool: UpstreamPool,
    host: str,
    port: int,
    target: bytes,
    userAgent: bytes,
    *,
    accept: bytes | None = None,
    maxBody: int | None = MAX_FETCH_BYTES,
) -> Deferred[tuple[int, bytes]]:
    """
    C{GET target} from C{host:port} through C{pool}; a Deferred of the
    status and the body (at most C{maxBody} bytes, else an
    L{UpstreamFailure} of kind C{ERROR}; L{None}: the body is thrown away).
    Cancel it to give up: the connection is closed.
    """
    hostname = f"[{host}]" if ":" in host else host
    head = b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n%sUser-Agent: %s\r\n\r\n" % (
        target,
        hostname.encode("ascii"),
        port,
        b"Accept: %s\r\n" % (accept,) if accept else b"",
        userAgent,
    )
    request = _Fetch(pool, head, maxBody)
    pool.acquire(host, port, request)
    return request.done


def fetchStatus(
    pool: UpstreamPool, host: str, port: int, target: bytes, userAgent: bytes
) -> Deferred[int]:
    """
    C{GET target} from C{host:port} through C{pool}; a Deferred of the
    status, the body read and thrown away whatever its length (cancel it to
    give up: the connection is closed).
    """
    return fetch(pool, host, port, target, userAgent, maxBody=None).addCallback(
        lambda answer: answer[0]
    )
