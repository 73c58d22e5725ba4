# -*- test-case-name: tests.test_channel -*-
"""
The L{Site} every service serves: the hardened channel, an access log line and
request metrics for every request, aborted ones included, and the bookkeeping
of open connections that a graceful drain needs.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterable, Set
from io import BytesIO
from json.encoder import encode_basestring
from time import time

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.http import (
    NO_BODY_CODES,
    INonQueuedRequestFactory,
    datetimeToString,
    parse_qs,
    toChunk,
    unquote,
)
from twisted.web.http_headers import _nameEncoder
from zope.interface import directlyProvides, provider

from .channel import LimitedHTTPChannel
from .collector import prepareForServing
from .logs import ENCODED
from .metrics import ABORTED_STATUS, HTTPMetrics

REQUEST_ID_HEADER = b"x-request-id"
SERVED_BY_HEADER = b"x-served-by"
SERVED_BY = socket.gethostname().encode("ascii", "replace")
"""
Which process answered (in a container, its id): shows the balancing.
"""
# The names as Headers keys them (canonical case), for its own table.
_SERVER_NAME, _DATE_NAME, _REQUEST_ID_NAME, _SERVED_BY_NAME, _FORWARDED_FOR_NAME, _COOKIE_NAME = (
    _nameEncoder.encode(name)
    for name in (
        b"server", b"date", REQUEST_ID_HEADER, SERVED_BY_HEADER, b"x-forwarded-for", b"cookie"
    )
)
_REQUEST_ID = re.compile(rb"\A[A-Za-z0-9._:-]{1,64}\Z")
_MAX_LOGGED_PATH = 512
MEMORY_BODY_BYTES = 100_000
"""
A request body declared shorter than this is kept in memory; a longer one,
or one of unknown length (chunked), in a temporary file: Twisted's figure.
"""

accessLog = Logger(namespace="webstack.access")

_ID_PREFIX = os.urandom(5).hex()
_ID_COUNTER = itertools.count(1)


def finishWith(request, body: bytes) -> None:
    """
    Write C{body}, the whole response body, and finish C{request}, saying its
    C{Content-Length} first: a body written in one piece then goes out as it
    is, not chunked (which costs the client a parser and every proxy on the
    way a re-framing), and a client knows when it has all of it.

    For a response written in several pieces over time (a stream), write and
    finish as usual: it is chunked, as it should be.
    """
    request.setHeader(b"content-length", b"%d" % (len(body),))
    request.write(body)
    request.finish()


_date: tuple[int, bytes] = (-1, b"")


def httpDate(now: float) -> bytes:
    """
    C{now} (seconds since the epoch) as an HTTP date, for C{Date}: made once
    a second, not once a response.
    """
    global _date
    second = int(now)
    cached, value = _date
    if second != cached:
        value = datetimeToString(second)
        # One tuple, replaced whole (as L{logs.isoTime} does).
        _date = (second, value)
    return value


def newRequestId() -> str:
    """
    A request id unique to this process's lifetime and, with a random prefix,
    across processes: cheaper per request than a UUID.
    """
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"


class RouteLabeler:
    """
    Map a request path to one of a fixed set of route names, so that metric
    labels stay bounded whatever paths clients ask for.  The longest matching
    prefix wins; anything else is C{"other"}.

    Most requests ask for a few paths again and again, so the answers for
    short paths are remembered (in a bounded table, emptied when full): a
    lookup instead of a walk over every prefix.
    """

    cacheSize = 1024
    cachedPathLength = 256

    def __init__(self, prefixes: Iterable[str]) -> None:
        self._prefixes = sorted(
            ((p, p.encode("ascii")) for p in prefixes),
            key=lambda pair: len(pair[1]),
            reverse=True,
        )
        self._known: dict[bytes, str] = {}

    def __call__(self, path: bytes) -> str:
        name = self._known.get(path)
        if name is not None:
            return name
        name = "other"
        for candidate, prefix in self._prefixes:
            if path.startswith(prefix):
                name = candidate
                break
        if len(path) <= self.cachedPathLength:
            if len(self._known) >= self.cacheSize:
                self._known.clear()
            self._known[path] = name
        return name


@provider(INonQueuedRequestFactory)
class ObservedRequest(server.Request):
    """
    A request that carries an id (C{X-Request-Id}, kept from the client when
    it is well formed, otherwise made), says which process answered it
    (C{X-Served-By}), and is observed exactly once: when it
    finishes, or when its client goes away first (status C{499} in metrics,
    C{outcome="aborted"} in the log).
    """

    requestId: str = "-"
    route: str = "other"
    _receivedAt: float | None = None
    _observed = False
    _requestIdValue: bytes | None = None
    _forwardedLines: bytes | None = None
    _forwardedNames: Set[bytes] = frozenset()
    _whenLost: tuple = ()
    _args: dict[bytes, list[bytes]] | None = None
    _query: bytes | None = None

    # Identity, as Twisted's Request.__eq__ and __ne__ compare (a request is
    # equal only to itself; for anything else, the other side is asked),
    # but in C: its channel compares each request as it is done, and
    # Twisted's are two calls in Python (test_channel compares the two).
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

    def __init_subclass__(cls, **kwargs) -> None:
        # Every request class here says what it is, a factory of requests
        # taking just the channel, which Twisted's channel asks of it for
        # every request: a class that declares nothing answers no through
        # an AttributeError zope.interface makes and drops, 0.3% of a
        # proxied request's instructions.  Declared for each subclass too
        # (SessionRequest, WorkerRequest): a class's own declaration is not
        # inherited.
        super().__init_subclass__(**kwargs)
        directlyProvides(cls, INonQueuedRequestFactory)

    def requestReceived(self, command, path, version):
        site = self.channel.site
        self._receivedAt = site.reactor.seconds()
        self.route = site.routeLabeler(path.partition(b"?")[0])
        # Looked up and set in Headers' own table, by canonical name, as
        # L{write} does for the response: getRawHeaders and setRawHeaders
        # would encode the name each time, on every request.
        raw = self.requestHeaders._rawHeaders
        given = raw.get(_REQUEST_ID_NAME)
        if given and _REQUEST_ID.match(given[0]):
            value = given[0]
            self.requestId = value.decode("ascii")
        else:
            self.requestId = newRequestId()
            value = self.requestId.encode("ascii")
            raw[_REQUEST_ID_NAME] = [value]
        # X-Request-Id and X-Served-By go into the response as its head is
        # written (L{write}), and only if it has none: a proxied response
        # brings the replica's, and the front set its own on every request
        # only to remove them again.
        self._requestIdValue = value
        self._site = site
        site.metrics.received()
        if self._parsePOSTFormSubmission:
            super().requestReceived(command, path, version)
            return
        # Twisted's requestReceived, for a site that parses no form (every
        # site here but one whose service reads form fields: App.parseForms):
        # the query is parsed when a resource first asks for C{args}
        # (L{args}), not for every request.  The front forwards
        # the query as it came and never asks: 1.9% of its instructions
        # per proxied request (docs/benchmarks.md).
        self.content.seek(0, 0)
        self.method, self.uri, self.clientproto = command, path, version
        self.path, _, self._query = path.partition(b"?")
        self.process()

    @property
    def args(self) -> dict[bytes, list[bytes]] | None:
        """
        The query's arguments, as Twisted's C{Request.args}: C{None} until the
        request is received, then parsed on first use (see
        L{requestReceived}).
        """
        if self._args is None and self._query is not None:
            self._args = parse_qs(self._query, 1)
        return self._args

    @args.setter
    def args(self, value: dict[bytes, list[bytes]] | None) -> None:
        self._args = value

    def parseCookies(self) -> None:
        # Twisted's, when there is a Cookie header to parse: it looks for
        # one with getRawHeaders (a call in Python canonicalizing the name)
        # on every request, and most have none.
        if _COOKIE_NAME in self.requestHeaders._rawHeaders:
            super().parseCookies()

    def whenLost(self, listener: Callable[[Failure], object]) -> None:
        """
        Call C{listener} with the reason if the connection is lost before
        this request has finished: what C{notifyFinish().addErrback(listener)}
        does, without the L{Deferred} that notifyFinish makes and calls back
        for every request, though nearly all of them finish.  The front's proxy
        listens on every request it forwards (4.6% of its instructions per
        request; docs/benchmarks.md).
        """
        self._whenLost = (*self._whenLost, listener)

    def connectionLost(self, reason):
        finished = self.finished
        if not finished:
            self.observe(aborted=True)
        super().connectionLost(reason)
        if not finished:
            listeners, self._whenLost = self._whenLost, ()
            for listener in listeners:
                listener(reason)

    def process(self):
        # Twisted's Request.process, but for when C{Server} and C{Date} are
        # set: as the head is written (L{write}), and only if the response
        # has none, with the date made once a second.  A proxied response
        # brings the upstream's, so the front made and set both on every
        # request only to drop them: 3.3% of its instructions per proxied
        # request (make bench-instructions; docs/benchmarks.md).
        self.site = self.channel.site
        self.prepath = []
        # Each segment unquoted as Twisted does, but only when there is
        # something to unquote: unquote gives a segment without a "%" back
        # as it is, and most paths have none.
        segments = self.path[1:].split(b"/")
        self.postpath = list(map(unquote, segments)) if self.path.find(b"%") >= 0 else segments
        if self.path == b"*":
            self._handleStar()
            return
        try:
            found = self.site.getResourceFor(self)
            if resource._IEncodingResource.providedBy(found):
                encoder = found.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(found)
        except BaseException:
            self.processingFailed(Failure())

    def forwardHead(self, lines: bytes, names: Set[bytes]) -> None:
        """
        Send C{lines}, header lines serialized already, in this response's
        head, before the headers in C{responseHeaders} (what this side adds
        to them: its channel's C{Connection}, say).

        For a proxy forwarding the head of a response it has parsed: made
        into a L{Headers} only for the channel to serialize it again, it
        cost the front 5% of its instructions per proxied request (make
        bench-instructions).

        @param lines: each C{b"Name: value\r\n"}, no CR or LF within a
            name or a value.
        @param names: the lowercased names in C{lines}.  The head gets what
            any head gets here when they and C{responseHeaders} lack it:
            C{Server}, C{Date}, this request's C{X-Request-Id}, and for a
            body of no C{Content-Length}, chunked framing (not this side's
            C{X-Served-By}: the response is the replica's).
        """
        self._forwardedLines = lines
        self._forwardedNames = names

    def write(self, data):
        if not self.startedWriting:
            if (
                self._forwardedLines is not None
                and not self.finished
                and not self._disconnected
            ):
                self._writeForwarded(data)
                return
            # Headers' own table (its documented _rawHeaders, by canonical
            # name): four of its calls per response otherwise, each
            # canonicalizing the name and checking the value again.
            raw = self.responseHeaders._rawHeaders
            if _SERVER_NAME not in raw:
                raw[_SERVER_NAME] = [server.version]
            if _DATE_NAME not in raw:
                raw[_DATE_NAME] = [httpDate(time())]
            if self._requestIdValue is not None:
                if _REQUEST_ID_NAME not in raw:
                    raw[_REQUEST_ID_NAME] = [self._requestIdValue]
                if _SERVED_BY_NAME not in raw:
                    raw[_SERVED_BY_NAME] = [SERVED_BY]
        super().write(data)

    def _writeForwarded(self, data: bytes) -> None:
        """
        Write the head given to L{forwardHead}, with C{data}, the first
        piece of the body: what L{twisted.web.http.Request.write} does on
        its first call, for a head that is mostly serialized already.
        """
        self.startedWriting = 1
        names = self._forwardedNames
        headers = self.responseHeaders
        if self.cookies:
            headers.setRawHeaders(b"set-cookie", self.cookies)
        if self.etag is not None:
            headers.setRawHeaders(b"etag", [self.etag])
        if self.lastModified is not None and not headers.hasHeader(b"last-modified"):
            headers.setRawHeaders(b"last-modified", [datetimeToString(self.lastModified)])
        head = [
            b"%s %d %s\r\n" % (self.clientproto, self.code, self.code_message),
            self._forwardedLines,
        ]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head.append(b"%s: %s\r\n" % (name, value))
        # What write adds to a head of this side's own, looked up the same
        # way: in the replica's names, then in Headers' own table.
        raw = headers._rawHeaders
        if b"server" not in names and _SERVER_NAME not in raw:
            head.append(b"Server: %s\r\n" % (server.version,))
        if b"date" not in names and _DATE_NAME not in raw:
            head.append(b"Date: %s\r\n" % (httpDate(time()),))
        if REQUEST_ID_HEADER not in names and _REQUEST_ID_NAME not in raw:
            # The replica sent none: the front's (the one it forwarded).
            head.append(b"X-Request-Id: %s\r\n" % (self._requestIdValue,))
        bodiless = self.method == b"HEAD" or self.code in NO_BODY_CODES
        if (
            not bodiless
            and self.clientproto == b"HTTP/1.1"
            and b"content-length" not in names
            and not headers.hasHeader(b"content-length")
        ):
            head.append(b"Transfer-Encoding: chunked\r\n")
            self.chunked = 1
        head.append(b"\r\n")
        if bodiless:
            # As Twisted does: nothing of a body goes after this head.
            self.write = _discard
        elif data:
            self.sentLength += len(data)
            if self.chunked:
                head.extend(toChunk(data))
            else:
                head.append(data)
        # One piece: the transport's writeSequence checks and counts each
        # piece in Python, and joins them all when it sends anyway.
        self.channel.write(b"".join(head))

    def render(self, resource):
        # Twisted answers 501 to a method outside GET, HEAD and POST that a
        # resource cannot render; the client chose that method, so it gets
        # 405 with Allow (webstack.runtime.methods).  Only those methods pay
        # for the guard.
        if self.method not in server.supportedMethods:
            from .methods import MethodGuard

            resource = MethodGuard(resource)
        super().render(resource)

    def finish(self):
        encoder = self._encoder
        if encoder is not None:
            # Twisted's own finish writes the encoder's last bytes (gzip's
            # trailer) with http.Request.write itself: past this class's
            # write (a head written then lacked this side's headers), past
            # the rule that a HEAD, 204 or 304 has no body (the trailer went
            # out after its head), and, when nothing was written before,
            # after a length declared for the body before it was encoded (an
            # empty file's Content-Length: 0).  Written here through write,
            # they go as any piece of the body does.
            self._encoder = None
            data = encoder.finish()
            if not self.startedWriting:
                self.responseHeaders.removeHeader(b"content-length")
            if data:
                self.write(data)
        # Finished without a byte written (an empty 500 from WSGIResource, a
        # redirect with no body): Twisted would send an empty chunked body;
        # "Content-Length: 0" says the same in one header.  Not for HEAD
        # (its length is the GET's), a status that has no body, or an
        # encoder (gzip writes a trailer even for nothing).
        elif (
            not self.startedWriting
            and self.method != b"HEAD"
            and self.code not in NO_BODY_CODES
            and not self.responseHeaders.hasHeader(b"content-length")
            and b"content-length" not in self._forwardedNames
        ):
            self.responseHeaders.setRawHeaders(b"content-length", [b"0"])
        # Listeners are let go as Twisted lets go of notifyFinish's
        # Deferreds: a proxy's exchange, which holds this request, would
        # otherwise hold it in a cycle for the collector to find.
        self._whenLost = ()
        return super().finish()

    def observe(self, aborted: bool) -> None:
        """
        Count this request in the metrics and write its access log line.
        """
        if self._observed or self._receivedAt is None:
            return
        self._observed = True
        site = self._site
        elapsed = site.reactor.seconds() - self._receivedAt
        status = ABORTED_STATUS if aborted else str(self.code)
        method = self.method.decode("ascii", "replace")
        site.metrics.observe(self.route, method, status, elapsed)
        forwardedFor = (self.requestHeaders._rawHeaders.get(_FORWARDED_FOR_NAME) or [b""])[0]
        _emitAccess(
            method,
            self.uri[:_MAX_LOGGED_PATH].decode("ascii", "replace"),
            status,
            "aborted" if aborted else "ok",
            self.sentLength,
            round(elapsed * 1000, 3),
            getattr(self.getClientAddress(), "host", "-"),
            forwardedFor.decode("ascii", "replace") or None,
            self.route,
            self.requestId,
        )


def _discard(data: bytes) -> None:
    """
    The body of a response that has none (to C{HEAD}, a 204, a 304).
    """


def _emitAccess(
    method: str,
    path: str,
    status: str,
    outcome: str,
    sent: int,
    milliseconds: float,
    client: str,
    forwardedFor: str | None,
    route: str,
    requestId: str,
) -> None:
    """
    Log one request's access line: the event C{accessLog.info("{line}",
    event="access", method=..., ...)} would make, handed straight to the
    logger's observer with its JSON line ready-made (L{ENCODED}).

    This is the one log event of every request, so it skips what a general
    one needs: C{Logger.emit}'s level check (a walk over every level), the
    formatter (the message is made here), and, in the JSON observer, a dict
    of the fields and C{json.dumps} over it (strings are encoded one by one
    with the C{json} module's own encoder, numbers need none).  The event
    still goes to every observer, with the same fields as before.
    """
    message = f"{method} {path} {status} {milliseconds:.1f}ms"
    encode = encode_basestring
    encoded = (
        f', "level": "info", "ns": "webstack.access", "msg": {encode(message)},'
        f' "event": "access", "method": {encode(method)}, "path": {encode(path)},'
        f' "status": {status}, "outcome": "{outcome}", "bytes": {sent:d},'
        f' "duration_ms": {milliseconds!r}, "client": {encode(client)},'
        f' "forwarded_for": {"null" if forwardedFor is None else encode(forwardedFor)},'
        f' "route": {encode(route)}, "request_id": {encode(requestId)}}}'
    )
    event = {
        "line": message,
        "event": "access",
        "method": method,
        "path": path,
        "status": int(status),
        "outcome": outcome,
        "bytes": sent,
        "duration_ms": milliseconds,
        "client": client,
        "forwarded_for": forwardedFor,
        "route": route,
        "request_id": requestId,
        "log_logger": accessLog,
        "log_level": LogLevel.info,
        "log_namespace": accessLog.namespace,
        "log_source": None,
        "log_format": "{line}",
        "log_time": time(),
    }
    event[ENCODED] = (len(event) + 1, encoded)
    accessLog.observer(event)


class WebSite(server.Site):
    """
    A L{Site} on L{LimitedHTTPChannel}s that logs and measures every request.

    @ivar channels: the open client connections, for a graceful drain.
    """

    protocol = LimitedHTTPChannel
    requestFactory = ObservedRequest
    displayTracebacks = False

    def __init__(
        self,
        resource,
        *,
        reactor,
        metrics: HTTPMetrics,
        routeLabeler: RouteLabeler,
        idleTimeout: float | None = 60.0,
        headTimeout: float | None = 10.0,
        bodyTimeout: float | None = 60.0,
        maxHeaderBytes: int = 16384,
        maxHeaders: int = 100,
        maxBodyBytes: int = 1 << 20,
        writeTimeout: float | None = 60.0,
        maxConnections: int | None = None,
        parseForms: bool = False,
        gcThreshold: int | None = None,
    ) -> None:
        # Twisted parses every urlencoded or multipart POST body into
        # request.args before a resource is even found, so a 9 MB form to a
        # path that does not exist costs seconds of the one reactor thread.
        # No resource here reads form fields; a service that does says so
        # (App.parseForms).
        super().__init__(
            resource,
            timeout=idleTimeout,
            reactor=reactor,
            parsePOSTFormSubmission=parseForms,
        )
        self.metrics = metrics
        self.routeLabeler = routeLabeler
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
        self.writeTimeout = writeTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaders = maxHeaders
        self.maxBodyBytes = maxBodyBytes
        self.maxConnections = maxConnections
        self.gcThreshold = gcThreshold
        """
        The collector's young threshold to set when serving starts
        (L{webstack.runtime.collector}), or L{None} to leave it.
        """
        self.bodyLimit = None
        """
        L{None}, or a function of a request's path giving the largest body
        accepted for it (the front's routes each have their service's).
        """
        self.channels: set[LimitedHTTPChannel] = set()
        self._emptied: list[Deferred[None]] = []

    def buildProtocol(self, addr):
        if self.maxConnections is not None and len(self.channels) >= self.maxConnections:
            # Closed as soon as accepted (Twisted's port does that with
            # None): each open connection costs a descriptor, memory and,
            # through the front, a second descriptor upstream; past this
            # many, refusing one is better than failing every one for
            # want of descriptors.
            self.metrics.connectionsRefused.inc()
            return None
        channel = super().buildProtocol(addr)
        channel.headTimeout = self.headTimeout
        channel.bodyTimeout = self.bodyTimeout
        channel.writeTimeout = self.writeTimeout
        channel.totalHeadersSize = self.maxHeaderBytes
        channel.MAX_LENGTH = self.maxHeaderBytes
        channel.maxHeaders = self.maxHeaders
        channel.maxBodyBytes = self.maxBodyBytes
        channel.bodyLimit = self.bodyLimit
        return channel

    # HTTPFactory keeps a once-a-second timer for its Combined Log Format
    # dates; this site logs structured events instead, so it needs neither
    # the timer nor the log file.  Starting to serve is when start-up's
    # objects are all made: the collector is set then.
    def startFactory(self) -> None:
        prepareForServing(self.gcThreshold)

    def stopFactory(self) -> None:
        pass

    def getResourceFor(self, request):
        # Twisted's, but for copying the path walked so far with the list's
        # own copy rather than copy.copy (a call in Python finding it).
        request.site = self
        request.sitepath = request.prepath[:]
        return resource.getChildForRequest(self.resource, request)

    def getContentFile(self, length: int | None):
        """
        Where a request's body is kept as it arrives: in memory under
        L{MEMORY_BODY_BYTES}, else in a temporary file, as Twisted keeps it
        for a site without this method.  Twisted's C{Request.gotLength} asks
        the site first, every request: without it, an C{AttributeError}
        raised and caught each time (callgrind).
        """
        if length is not None and length < MEMORY_BODY_BYTES:
            return BytesIO()
        return tempfile.TemporaryFile()

    def log(self, request) -> None:
        observe = getattr(request, "observe", None)
        if observe is not None:
            observe(aborted=False)

    # Connection bookkeeping, called by LimitedHTTPChannel.

    def channelOpened(self, channel) -> None:
        self.channels.add(channel)
        self.metrics.openConnections.inc()

    def channelClosed(self, channel) -> None:
        if channel in self.channels:
            self.channels.discard(channel)
            self.metrics.openConnections.dec()
        if not self.channels:
            emptied, self._emptied = self._emptied, []
            for d in emptied:
                d.callback(None)

    def requestRefused(self, channel, status: int, reason: str, message: str) -> None:
        self.metrics.refused.labels(reason).inc()
        peer = channel.transport.getPeer()
        accessLog.info(
            "refused {status}: {message}",
            event="refused",
            status=status,
            reason=reason,
            message=message,
            client=getattr(peer, "host", "-"),
        )

    def responseStalled(self, channel, seconds: float) -> None:
        self.metrics.writeTimeouts.inc()
        peer = channel.transport.getPeer()
        accessLog.info(
            "response aborted: the client read nothing for {seconds:g} s",
            event="write_timeout",
            seconds=seconds,
            client=getattr(peer, "host", "-"),
        )

    def whenEmpty(self) -> Deferred[None]:
        """
        A Deferred that fires once no client connection is open.
        """
        if not self.channels:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._emptied.append(d)
        return d
