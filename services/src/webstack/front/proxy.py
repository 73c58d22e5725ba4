# -*- test-case-name: tests.test_front_client -*-
"""
The streaming reverse proxy: one L{RouteProxy} per route, one L{Exchange} per
request.

Stock L{twisted.web.proxy.ReverseProxyResource} opens an HTTP/1.0 connection
per request, streams nothing back-pressured, and never tells the backend when
the client leaves (twisted#6768): the backend renders every abandoned request
to the end and the proxy then raises C{RuntimeError} finishing a request whose
connection is gone.  Here:

  - requests go over keep-alive connections from the front's own pool
    (L{webstack.front.client}), the head serialized once, the response
    parsed by httptools;
  - the response body is streamed: when it goes on beyond the first read,
    the upstream connection becomes the client request's producer, so a
    slow client pauses the read from the backend instead of filling memory;
  - a client that leaves closes the upstream connection at once, before the
    response head or during the body: the backend sees its connection close
    and its own C{notifyFinish} fires (seed 000, end to end);
  - a replica that refuses (or does not accept in time) is ejected and the
    request tried on another (nothing was sent, so any method may be
    retried); an idempotent request without a body whose reused connection
    closed before answering is sent again on a new one; with no replica
    left, or a reset after sending, the answer is C{502}; no response head
    within the route's timeout is a C{504};
  - a body that breaks off upstream is not passed off as complete: the
    client connection is aborted, so the client sees the truncation;
  - on a sticky route, the front's own signed routing cookie
    (L{webstack.front.affinity}) sends a client back to the replica that
    served it, from any worker or front replica.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from webstack.runtime.errors import errorBody, renderError

from .client import UpstreamConnection, UpstreamPool
from .deadlines import Deadlines
from .failures import DETAIL, ERROR, TIMEOUT, UpstreamFailure, classify, describeFailure
from .headers import CONTENT_LENGTH, TRANSFER_ENCODING, forwardedHeaderLines, upstreamRequestHead
from .metrics import ProxyMetrics
from .settings import RouteSettings
from .upstreams import Replica, ReplicaChooser, ReplicaSet

log = Logger(namespace="webstack.front.proxy")

_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


class RouteProxy(Resource):
    """
    Forward every request under one route's prefix to its replicas.

    @ivar routeCookie: the route's L{RouteCookie} if it is sticky, else
        L{None}.
    """

    isLeaf = True

    def __init__(
        self,
        route: RouteSettings,
        replicas: ReplicaSet,
        *,
        pool: UpstreamPool,
        reactor,
        metrics: ProxyMetrics,
        trustForwarded: bool = False,
        routeCookie=None,
    ) -> None:
        super().__init__()
        self.route = route
        self.replicas = replicas
        self.pool = pool
        self.reactor = reactor
        self.metrics = metrics
        self.trustForwarded = trustForwarded
        self.routeCookie = routeCookie
        self.chooser = ReplicaChooser(replicas, routeCookie, trustForwarded)
        self.deadlines = Deadlines(reactor, route.timeout, Exchange.timedOut)

    def render(self, request):
        if not self.replicas.configured:
            self.metrics.outcome(self.route.name, "not_served")
            return errorBody(
                request,
                503,
                f"The {self.route.name} service is not part of this stack yet.",
                route=self.route.prefix,
            )
        Exchange(self, request).start()
        return NOT_DONE_YET


class Exchange:
    """
    One client request and its upstream request(s): an L{IExchange} for
    the connection that serves it.  The request is the runtime's
    L{webstack.runtime.site.ObservedRequest}, whose C{whenLost} says when
    its client leaves.
    """

    __slots__ = (
        "proxy",
        "request",
        "route",
        "head",
        "body",
        "isHead",
        "tried",
        "replica",
        "connection",
        "headSeen",
        "ended",
        "clientGone",
        "streamingFrom",
        "_sentAt",
        "_waiting",
        "_cookieToSet",
        "_cookies",
    )

    def __init__(self, proxy: RouteProxy, request) -> None:
        self.proxy = proxy
        self.request = request
        self.route = proxy.route.name
        body = None
        incoming = request.requestHeaders
        raw = incoming._rawHeaders  # by canonical name (headers.py)
        if (
            CONTENT_LENGTH in raw or TRANSFER_ENCODING in raw
        ) and request.content is not None:
            request.content.seek(0)
            body = request.content.read()
        self.body = body
        self._cookies = proxy.chooser.takeCookies(incoming)
        self.head = upstreamRequestHead(
            request, proxy.trustForwarded, None if body is None else len(body)
        )
        self.isHead = request.method == b"HEAD"
        self.tried: list[Replica] = []
        self.replica: Replica | None = None
        self.connection: UpstreamConnection | None = None
        self.headSeen = False
        self.ended = False
        self.clientGone = False
        self.streamingFrom = None
        self._sentAt = 0.0
        self._waiting = False
        self._cookieToSet = None
        request.whenLost(self._clientLeft)

    # Choosing a replica and sending.

    def start(self) -> None:
        proxy = self.proxy
        replica, self._cookieToSet = proxy.chooser.choose(
            self.request, self._cookies, self.tried
        )
        if replica is None:
            self._noReplica()
            return
        self.tried.append(replica)
        self.replica = replica
        replica.inFlight += 1
        if not self._waiting:
            self._waiting = True
            self._sentAt = proxy.reactor.seconds()
            proxy.deadlines.add(self)
        try:
            proxy.pool.acquire(replica.host, replica.port, self)
        except Exception as e:
            # Nothing was sent (no descriptor left, say): the replica's
            # slot is given back and the client answered, as for any
            # upstream failure, so its in-flight count never drifts.
            self._failed(ERROR, f"{type(e).__name__}: {e}")

    def _noReplica(self) -> None:
        self._stopTimer()
        self._end("no_replica")
        replicas = self.proxy.replicas.replicas
        detail = (
            f"No replica of the {self.route} service is available"
            f" ({len(replicas)} known, all failing)."
            if replicas
            else f"No replica of the {self.route} service is running."
        )
        renderError(self.request, 502, detail, upstream=self.route)

    def connected(self, connection: UpstreamConnection) -> None:
        if self.ended:
            # Timed out or abandoned while connecting: nothing was sent on
            # this new connection, so it serves the next request.
            self.proxy.pool.release(connection)
            return
        self.connection = connection
        connection.send(self, self.head, self.body, self.isHead)

    def connectFailed(self, kind: str, reason) -> None:
        if self.ended:
            # Timed out (or abandoned) while connecting; the replica is
            # still left out, so the next request does not wait on it too.
            if self.tried:
                self.proxy.replicas.eject(self.tried[-1], f"{kind}: {describeFailure(reason)}")
            return
        self._failed(kind, describeFailure(reason))

    # The response.

    def responseHead(self, code: int, phrase: bytes, headers, names) -> None:
        self._stopTimer()
        self.headSeen = True
        proxy = self.proxy
        now = proxy.reactor.seconds()
        proxy.metrics.headSeconds(self.route, now - self._sentAt)
        if self.replica is not None:
            self.replica.observeLatency(now - self._sentAt, now)
        request = self.request
        request.setResponseCode(code, phrase or None)
        lines, names = forwardedHeaderLines(headers, names)
        # The replica's head is the response's: the front's runtime adds
        # no X-Served-By of its own to it, and its X-Request-Id only if the
        # replica sent none (ObservedRequest.forwardHead).  What the front
        # adds stays: its channel's Connection (close, when draining), its
        # routing cookie, X-Worker.  No default Content-Type is added
        # (Twisted's text/html would invite a browser to sniff an untyped
        # body).
        if self._cookieToSet is not None:
            request.responseHeaders.addRawHeader(b"set-cookie", self._cookieToSet)
        request.forwardHead(lines, names)

    def responseBody(self, data: bytes) -> None:
        if not self.clientGone:
            self.request.write(data)

    def streaming(self, producer) -> None:
        if not self.clientGone:
            self.streamingFrom = producer
            self.request.registerProducer(producer, True)

    def stoppedStreaming(self) -> None:
        if self.streamingFrom is not None:
            self.streamingFrom = None
            if not self.clientGone:
                self.request.unregisterProducer()

    def responseEnded(self) -> None:
        self.connection = None
        self._release()
        if self.clientGone:
            self._end("client_gone_during_body")
            return
        self._end("response")
        self.request.finish()

    def upstreamFailed(self, failure: UpstreamFailure, retryable: bool) -> None:
        self.connection = None
        if self.ended:
            return
        if self.headSeen:
            self._bodyBroken(failure)
            return
        if retryable and not self.body and self.request.method in _IDEMPOTENT:
            # The replica closed an idle connection just as this request
            # went out on it: the same replica, on a new connection.
            self.proxy.pool.acquire(self.replica.host, self.replica.port, self)
            return
        self._failed(failure.kind, failure.detail)

    # Failures.

    def _failed(self, kind: str, detail: str) -> None:
        replica = self.replica
        self._release()
        verdict = classify(kind)
        if verdict.nothingSent and replica is not None:
            self.proxy.replicas.eject(replica, f"{kind}: {detail}")
            if self.proxy.replicas.pick(exclude=self.tried) is not None:
                self.proxy.metrics.retried(self.route)
                self.start()
                return
        self._stopTimer()
        self._end(verdict.outcome)
        request = self.request
        log.warn(
            "{route}: upstream {replica} {outcome}; answering {status}",
            event="upstream_failed",
            route=self.route,
            replica=replica.address if replica else "-",
            outcome=verdict.outcome,
            status=verdict.status,
            error=detail,
            request_id=getattr(request, "requestId", "-"),
        )
        renderError(
            request,
            verdict.status,
            f"The {self.route} service {DETAIL[verdict.outcome]}.",
            upstream=self.route,
        )

    def _bodyBroken(self, failure: UpstreamFailure) -> None:
        self._release()
        if self.clientGone:
            self._end("client_gone_during_body")
            return
        self._end("broken_body")
        request = self.request
        log.warn(
            "{route}: upstream {replica} broke off the response body; aborting"
            " the client connection so it sees the truncation",
            event="upstream_body_broken",
            route=self.route,
            replica=self.tried[-1].address if self.tried else "-",
            error=failure.detail,
            request_id=getattr(request, "requestId", "-"),
        )
        request.channel.transport.abortConnection()

    def timedOut(self) -> None:
        """
        No response head within the route's timeout (L{Deadlines} calls
        this).
        """
        self._waiting = False
        if self.ended or self.headSeen:
            return
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort()
        self._failed(TIMEOUT, f"no response head within {self.proxy.route.timeout:g}s")

    def _stopTimer(self) -> None:
        if self._waiting:
            self._waiting = False
            self.proxy.deadlines.discard(self)

    # The client leaving.

    def _clientLeft(self, reason) -> None:
        if self.ended:
            return
        self.clientGone = True
        self.streamingFrom = None
        self._stopTimer()
        connection, self.connection = self.connection, None
        if connection is not None:
            # Closing it is how the backend learns: its notifyFinish fires.
            connection.abort()
        self._release()
        self._end(
            "client_gone_during_body" if self.headSeen else "client_gone_before_response"
        )

    def _release(self) -> None:
        if self.replica is not None:
            self.replica.inFlight -= 1
            self.replica = None

    def _end(self, outcome: str) -> None:
        if not self.ended:
            self.ended = True
            self.proxy.metrics.outcome(self.route, outcome)

