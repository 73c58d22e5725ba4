# -*- test-case-name: tests.test_channel -*-
"""
An L{HTTPChannel} that a slow or greedy client cannot hold open or fill up.

Stock Twisted resets its idle timeout on every byte, so a client that sends
one header byte every 20 seconds keeps a connection forever (slowloris), and
it answers an oversized head with a bare C{400}.  This channel adds:

  - a deadline for the whole request head, started by its first bytes
    (C{408} when it passes);
  - a deadline for the whole request body, started when the head is complete
    (C{408});
  - C{431} for a head larger than C{totalHeadersSize} or with more than
    C{maxHeaders} fields, instead of a bare C{400};
  - C{413} for a body larger than the limit (C{maxBodyBytes}, or what the
    factory's C{bodyLimit} says for the request's path): at once from its
    C{Content-Length}, or as soon as a chunked body grows past the limit;
  - a deadline for a response the client does not read: Twisted suspends
    the idle timeout while a request is handled, so a client that asks for
    a large response and never reads holds the connection, and whatever
    feeds it (an open file, an upstream connection), forever.  Once the
    client's socket buffer is full, the transport pauses this channel; if
    it is not resumed within C{writeTimeout} seconds (the client took
    nothing for that long), the connection is aborted, which stops the
    response's producer and releases all it holds (nginx's C{send_timeout}).

It also keeps Twisted's idle timeout with one timer per connection rather
than one per request (L{setTimeout}).

Each refusal is a small C{text/plain} response with C{Connection: close},
reported to the factory's C{requestRefused} (for metrics and the log), and the
connection is closed, then aborted if the peer does not read.
"""

from __future__ import annotations

from twisted.protocols.basic import LineReceiver
from twisted.web import http
from twisted.web.http_headers import InvalidHeaderName, _nameEncoder

_CONNECTION_NAME = _nameEncoder.encode(b"connection")

_REASON_PHRASES = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


# The methods below that run for every request (some for every line) call
# HTTPChannel's directly rather than through super(), which makes an object
# on each call; nothing else sits between the two classes.
_HTTPChannel = http.HTTPChannel


class LimitedHTTPChannel(http.HTTPChannel):
    """
    @ivar headTimeout: seconds from the first byte of a request's head to its
        last, or L{None} for no limit.
    @ivar bodyTimeout: seconds from the end of a request's head to the end of
        its body, or L{None} for no limit.
    @ivar maxBodyBytes: the largest request body accepted, in bytes.
    @ivar closeAfterResponse: set while the server drains: the response in
        progress says C{Connection: close} and the connection then closes.
    """

    headTimeout: float | None = 10.0
    bodyTimeout: float | None = 60.0
    writeTimeout: float | None = 60.0
    maxBodyBytes: int = 1 << 20
    bodyLimit = None  # or a function of the request path: its body limit
    closeAfterResponse = False

    _phase = "head"  # "head" -> "body" -> "handling" -> "head" ...
    _deadline = None
    _writeDeadline = None
    _refused = False
    _bodyBytes = 0
    _bodyLimit = 1 << 20

    def connectionMade(self):
        super().connectionMade()
        opened = getattr(self.factory, "channelOpened", None)
        if opened is not None:
            opened(self)

    # A connection's addresses and whether it is TLS do not change while it
    # is open, but Twisted asks the transport again for every request: a
    # getsockname() system call, an interface adaptation, and a new address
    # object each time.
    _host = None
    _peer = None
    _secure = None

    def getPeer(self):
        peer = self._peer
        if peer is None:
            peer = self._peer = self.transport.getPeer()
        return peer

    def getHost(self):
        host = self._host
        if host is None:
            host = self._host = self.transport.getHost()
        return host

    def isSecure(self):
        secure = self._secure
        if secure is None:
            secure = self._secure = http.HTTPChannel.isSecure(self)
        return secure

    # The idle timeout.  Twisted's TimeoutMixin cancels its timer as each
    # request's head is complete and makes a new one as its response ends: a
    # DelayedCall made, pushed onto the reactor's heap, cancelled and swept
    # out again for every request on a keep-alive connection.  Here one timer
    # lives as long as the connection does: suspending the timeout (while a
    # request is handled) and starting it again only note the fact and the
    # time, and the timer, when it comes due, looks at when the connection
    # was last active and waits for the rest, or times it out.  The timeout
    # is as exact as Twisted's; a request handled for longer than the timeout
    # costs one new timer.

    _idleCall = None
    _idleFrom = 0.0

    def setTimeout(self, period):
        prev = self.timeOut
        self.timeOut = period
        if period is None:
            return prev
        call = self._idleCall
        if call is None:
            self._idleCall = call = self.callLater(period, self._idleDue)
            self._idleFrom = call.getTime() - period
            return prev
        now = self._idleFrom = call.seconds()
        if call.getTime() > now + period:
            # A shorter timeout than the one the timer was set for.
            call.reset(period)
        return prev

    def resetTimeout(self):
        call = self._idleCall
        if call is not None and self.timeOut is not None:
            self._idleFrom = call.seconds()

    def _idleDue(self):
        call, self._idleCall = self._idleCall, None
        if self.timeOut is None or self.transport is None:
            # Suspended: the next setTimeout makes a new timer.
            return
        remaining = self._idleFrom + self.timeOut - call.seconds()
        if remaining > 0:
            self._idleCall = self.callLater(remaining, self._idleDue)
            return
        self.timeoutConnection()

    def _cancelIdle(self):
        call, self._idleCall = self._idleCall, None
        if call is not None and call.active():
            call.cancel()

    def connectionLost(self, reason):
        self._cancelIdle()
        self._cancelDeadline()
        self._cancelWriteDeadline()
        super().connectionLost(reason)
        closed = getattr(self.factory, "channelClosed", None)
        if closed is not None:
            closed(self)

    # The request head.

    def dataReceived(self, data):
        if (
            self.line_mode
            and not self._buffer
            and not self._busyReceiving
            and self._phase == "head"
            and not self._receivedHeaderSize
            and not self._refused
            and self.persistent
        ):
            # At the start of a request's head, nothing of it buffered.
            self.resetTimeout()
            if not self._wholeHead(data):
                LineReceiver.dataReceived(self, data)
        else:
            _HTTPChannel.dataReceived(self, data)
        # Deadlines are armed only for a head or body still incomplete once
        # this data is parsed: most requests arrive whole in one read and
        # never cost a timer.
        if self._deadline is None and not self._refused and self.transport:
            if self._phase == "head" and (self._buffer or self._receivedHeaderSize):
                self._startDeadline(self.headTimeout, "head_timeout")
            elif self._phase == "body":
                self._startDeadline(self.bodyTimeout, "body_timeout")

    def _wholeHead(self, data: bytes) -> bool:
        """
        Parse a request head that C{data} holds whole, with one split and
        one loop, rather than a turn of the line receiver, two
        C{lineReceived} and two C{headerReceived} per header line: Twisted's
        way cost the async service 17,000 to 20,000 instructions per header
        (callgrind), so the four a proxy adds (C{X-Forwarded-*},
        C{X-Request-Id}) made it 16% dearer per request behind the front
        than direct.

        Only for a head that needs none of the line path's other rules: no
        folded line, no stray CR, LF or NUL, within the size and count
        limits, not opened by an empty line (which Twisted skips, once).
        Anything else is left to the line path, which answers it as before.
        The request line and the head's end go through
        L{http.HTTPChannel.lineReceived} as they would have; each header
        gets what L{http.HTTPChannel.headerReceived} does to it
        (test_channel feeds the same heads both ways and compares).

        @return: whether C{data} was taken (what follows the head included).
        """
        end = data.find(b"\r\n\r\n")
        if end <= 0 or end > self.totalHeadersSize or end > self.MAX_LENGTH:
            return False
        head = data[:end]
        lines = head.split(b"\r\n")
        fields = len(lines) - 1
        # find() rather than `in`: on CPython 3.11, `b"x" in data` first
        # tries its operand as an int and builds (then drops) a TypeError
        # message, about 1,400 instructions a test (callgrind); find() is a
        # fifth of that.
        if (
            not lines[0]
            or fields > self.maxHeaders
            or head.count(b"\n") != fields
            or head.count(b"\r") != fields
            or head.find(b"\x00") >= 0
            or head.find(b"\n ") >= 0
            or head.find(b"\n\t") >= 0
        ):
            return False
        self._busyReceiving = True
        self._buffer = data[end + 4 :]
        try:
            if not self._headLines(lines):
                return True
        finally:
            self._busyReceiving = False
        if self._buffer:
            # A body, or the next request: the line receiver's as usual.
            LineReceiver.dataReceived(self, b"")
        return True

    def _headLines(self, lines: list[bytes]) -> bool:
        """
        The request line, each header line, and the head's end, of a head
        L{_wholeHead} checked.

        @return: whether the connection is still open for what follows.
        """
        _HTTPChannel.lineReceived(self, lines[0])
        transport = self.transport
        if transport is None or transport.disconnecting:
            return False
        raw = self.requests[-1].requestHeaders._rawHeaders
        encode = _nameEncoder.encode
        size = len(lines[0])
        for line in lines[1:]:
            size += len(line)
            name, colon, value = line.partition(b":")
            try:
                if not colon:
                    raise InvalidHeaderName(line)
                name = encode(name)
            except InvalidHeaderName:
                self._respondToBadRequestAndDisconnect()
                return False
            value = value.strip(b" \t")
            if (
                name == b"Content-Length" or name == b"Transfer-Encoding"
            ) and not self._maybeChooseTransferDecoder(name, value):
                return False
            # What Headers.addRawHeader does, but for making sure the value
            # has no line break: the head was split at every one.
            values = raw.get(name)
            if values is None:
                raw[name] = [value]
            else:
                values.append(value)
        self._receivedHeaderSize = size
        self._receivedHeaderCount = len(lines) - 1
        _HTTPChannel.lineReceived(self, b"")
        transport = self.transport
        return transport is not None and not transport.disconnecting

    def lineReceived(self, line):
        if self._refused:
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._headTooLarge()
            return
        _HTTPChannel.lineReceived(self, line)

    def lineLengthExceeded(self, line):
        self._headTooLarge()

    def headerReceived(self, line):
        if self._receivedHeaderCount >= self.maxHeaders:
            self.refuse(
                431,
                "header_too_large",
                f"request has more than {self.maxHeaders} header fields",
            )
            return False
        return _HTTPChannel.headerReceived(self, line)

    def _headTooLarge(self):
        self.refuse(
            431,
            "header_too_large",
            f"request head is larger than {self.totalHeadersSize} bytes",
        )

    def allHeadersReceived(self):
        if self._deadline is not None:
            self._cancelDeadline()
        limit = self.maxBodyBytes
        if self.bodyLimit is not None:
            limit = self.bodyLimit(self._path)
        self._bodyLimit = limit
        if self.length is not None and self.length > limit:
            self._bodyTooLarge()
            return
        _HTTPChannel.allHeadersReceived(self)
        decoder = self._transferDecoder
        if self.length != 0 and decoder is not None:
            self._phase = "body"
            self._bodyBytes = 0
            decoder.dataCallback = self._countBody(decoder.dataCallback)

    # The request body.

    def _countBody(self, deliver):
        """
        Wrap the body decoder's output so a chunked body is refused as soon as
        it grows past C{maxBodyBytes}, before it is all spooled to disk.
        """

        def counted(data):
            if self._refused:
                return
            self._bodyBytes += len(data)
            if self._bodyBytes > self._bodyLimit:
                self._bodyTooLarge()
                return
            deliver(data)

        return counted

    def _bodyTooLarge(self):
        self.refuse(
            413,
            "body_too_large",
            f"request body is larger than {self._bodyLimit} bytes",
        )

    def rawDataReceived(self, data):
        if self._refused:
            return
        super().rawDataReceived(data)

    def allContentReceived(self):
        if self._refused:
            return
        if self._deadline is not None:
            self._cancelDeadline()
        self._phase = "handling"
        _HTTPChannel.allContentReceived(self)

    def checkPersistence(self, request, version):
        if self.closeAfterResponse:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        if version == b"HTTP/1.1" and _CONNECTION_NAME not in request.requestHeaders._rawHeaders:
            # What Twisted's says of most requests, without its lookup (a
            # call in Python canonicalizing the name): kept alive.
            return True
        return _HTTPChannel.checkPersistence(self, request, version)

    def closeWhenIdle(self) -> None:
        """
        Close now if no request is in progress; otherwise let the current
        one finish, with C{Connection: close}, and close then.
        """
        self.closeAfterResponse = True
        if not self.requests:
            self.loseConnection()
            return
        self.persistent = False
        for request in self.requests:
            if not request.startedWriting:
                request.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def requestDone(self, request):
        self._phase = "head"
        _HTTPChannel.requestDone(self, request)

    # The response: a client that reads nothing.

    def pauseProducing(self):
        # Called by the transport: the client's socket buffer is full.
        _HTTPChannel.pauseProducing(self)
        if self._writeDeadline is None and self.writeTimeout:
            self._writeDeadline = self.callLater(self.writeTimeout, self._writeStalled)

    def resumeProducing(self):
        # The client took some of it: the deadline starts again next time.
        self._cancelWriteDeadline()
        _HTTPChannel.resumeProducing(self)

    def _cancelWriteDeadline(self):
        if self._writeDeadline is not None:
            if self._writeDeadline.active():
                self._writeDeadline.cancel()
            self._writeDeadline = None

    def _writeStalled(self):
        self._writeDeadline = None
        if self.transport is None:
            return
        stalled = getattr(self.factory, "responseStalled", None)
        if stalled is not None:
            stalled(self, self.writeTimeout)
        self.transport.abortConnection()

    # Deadlines and refusals.

    def _startDeadline(self, seconds, reason):
        self._cancelDeadline()
        if seconds:
            self._deadline = self.callLater(seconds, self._deadlinePassed, reason)

    def _cancelDeadline(self):
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _deadlinePassed(self, reason):
        self._deadline = None
        part, limit = (
            ("head", self.headTimeout)
            if reason == "head_timeout"
            else ("body", self.bodyTimeout)
        )
        self.refuse(408, reason, f"request {part} not received within {limit:g} s")

    def refuse(self, status: int, reason: str, message: str) -> None:
        """
        Answer C{status} with C{message} and close the connection.  Only the
        first refusal on a connection is sent.
        """
        if self._refused or self.transport is None:
            return
        self._refused = True
        self._cancelDeadline()
        body = message.encode("utf-8") + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s"
            % (status, _REASON_PHRASES[status], len(body), body)
        )
        refused = getattr(self.factory, "requestRefused", None)
        if refused is not None:
            refused(self, status, reason, message)
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()
