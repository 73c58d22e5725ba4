# -*- test-case-name: webstack.tests.test_site -*-
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
from collections.abc import Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web import server

from .channel import LimitedHTTPChannel
from .metrics import ABORTED_STATUS, HTTPMetrics

REQUEST_ID_HEADER = b"x-request-id"
SERVED_BY_HEADER = b"x-served-by"
SERVED_BY = socket.gethostname().encode("ascii", "replace")
"""
Which process answered (in a container, its id): shows the balancing.
"""
_REQUEST_ID = re.compile(rb"\A[A-Za-z0-9._:-]{1,64}\Z")
_MAX_LOGGED_PATH = 512

accessLog = Logger(namespace="webstack.access")

_ID_PREFIX = os.urandom(5).hex()
_ID_COUNTER = itertools.count(1)


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
    """

    def __init__(self, prefixes: Iterable[str]) -> None:
        self._prefixes = sorted(
            ((p, p.encode("ascii")) for p in prefixes),
            key=lambda pair: len(pair[1]),
            reverse=True,
        )

    def __call__(self, path: bytes) -> str:
        for name, prefix in self._prefixes:
            if path == prefix or path.startswith(prefix):
                return name
        return "other"


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

    def requestReceived(self, command, path, version):
        site = self.channel.site
        self._receivedAt = site.reactor.seconds()
        self.route = site.routeLabeler(path.split(b"?", 1)[0])
        given = self.requestHeaders.getRawHeaders(REQUEST_ID_HEADER, [b""])[0]
        if _REQUEST_ID.match(given):
            self.requestId = given.decode("ascii")
        else:
            self.requestId = newRequestId()
            self.requestHeaders.setRawHeaders(
                REQUEST_ID_HEADER, [self.requestId.encode("ascii")]
            )
        self.responseHeaders.setRawHeaders(
            REQUEST_ID_HEADER, [self.requestId.encode("ascii")]
        )
        self.responseHeaders.setRawHeaders(SERVED_BY_HEADER, [SERVED_BY])
        self._site = site
        site.metrics.inFlight.inc()
        super().requestReceived(command, path, version)

    def connectionLost(self, reason):
        if not self.finished:
            self.observe(aborted=True)
        super().connectionLost(reason)

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
        forwardedFor = self.requestHeaders.getRawHeaders(b"x-forwarded-for", [b""])[0]
        path = self.uri[:_MAX_LOGGED_PATH].decode("ascii", "replace")
        milliseconds = round(elapsed * 1000, 3)
        # The message is made here with an f-string: twisted.logger's
        # formatter is the slowest part of a log line.
        accessLog.info(
            "{line}",
            line=f"{method} {path} {status} {milliseconds:.1f}ms",
            event="access",
            method=method,
            path=path,
            status=int(status),
            outcome="aborted" if aborted else "ok",
            bytes=self.sentLength,
            duration_ms=milliseconds,
            client=getattr(self.getClientAddress(), "host", "-"),
            forwarded_for=forwardedFor.decode("ascii", "replace") or None,
            route=self.route,
            request_id=self.requestId,
        )


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
    ) -> None:
        super().__init__(resource, timeout=idleTimeout, reactor=reactor)
        self.metrics = metrics
        self.routeLabeler = routeLabeler
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaders = maxHeaders
        self.maxBodyBytes = maxBodyBytes
        self.channels: set[LimitedHTTPChannel] = set()
        self._emptied: list[Deferred[None]] = []

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.headTimeout = self.headTimeout
        channel.bodyTimeout = self.bodyTimeout
        channel.totalHeadersSize = self.maxHeaderBytes
        channel.MAX_LENGTH = self.maxHeaderBytes
        channel.maxHeaders = self.maxHeaders
        channel.maxBodyBytes = self.maxBodyBytes
        return channel

    # HTTPFactory keeps a once-a-second timer for its Combined Log Format
    # dates; this site logs structured events instead, so it needs neither
    # the timer nor the log file.
    def startFactory(self) -> None:
        pass

    def stopFactory(self) -> None:
        pass

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

    def whenEmpty(self) -> Deferred[None]:
        """
        A Deferred that fires once no client connection is open.
        """
        if not self.channels:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._emptied.append(d)
        return d
