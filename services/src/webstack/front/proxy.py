# -*- test-case-name: webstack.tests.test_front_units -*-
"""
The streaming reverse proxy: one L{RouteProxy} per route, one L{Exchange} per
request.

Stock L{twisted.web.proxy.ReverseProxyResource} opens an HTTP/1.0 connection
per request, buffers nothing but streams nothing back-pressured either, and
never tells the backend when the client leaves (twisted#6768): the backend
renders every abandoned request to the end and the proxy then raises
C{RuntimeError} finishing a request whose connection is gone.  Here:

  - requests go through an L{Agent} over a persistent L{HTTPConnectionPool};
  - the response body is streamed with back-pressure: the upstream
    connection is registered as the client request's producer, so a slow
    client pauses the read from the backend instead of filling memory;
  - a client that leaves cancels the upstream request at once: before the
    response head, cancelling the Agent's Deferred aborts the upstream
    connection; during the body, the upstream transport is stopped.  Either
    way the backend sees its connection close and its own C{notifyFinish}
    fires (seed 000, end to end);
  - a replica that refuses (or does not accept in time) is ejected and the
    request tried on another (nothing was sent, so any method may be
    retried); with no replica left, or a reset after sending, the answer is
    C{502}; no response head within the route's timeout is a C{504};
  - a body that breaks off upstream is not passed off as complete: the
    client connection is aborted, so the client sees the truncation;
  - on a route with a C{sticky_cookie}, a request carrying that cookie goes
    to the replica whose response set it (sessions live in one replica's
    memory).
"""

from __future__ import annotations

from twisted.internet import error as ierror
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import (
    FileBodyProducer,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from webstack.runtime.errors import errorBody, renderError

from .headers import upstreamRequestHeaders, useResponseHeaders
from .metrics import ProxyMetrics
from .settings import RouteSettings
from .upstreams import Replica, ReplicaSet

log = Logger(namespace="webstack.front.proxy")


def classify(failure, timedOut: bool = False) -> tuple[int, str, bool]:
    """
    What an upstream failure means for the client.

    @param timedOut: whether the front itself cancelled the request because
        the route's timeout passed (the Agent then fails with
        L{ResponseNeverReceived} wrapping a L{CancelledError}, not with a
        timeout error).

    @return: C{(status, outcome, nothingSent)}: the status to answer, the
        outcome's name in metrics and logs, and whether the request never
        reached the replica (so it can be tried on another, and the replica
        should be ejected).
    """
    if timedOut:
        return 504, "timeout", False
    if failure.check(ierror.TimeoutError):
        # Unreachable (a container that is gone answers nothing), not slow.
        return 502, "connect_timeout", True
    if failure.check(ierror.ConnectError):
        return 502, "refused", True
    if failure.check(ResponseFailed, RequestTransmissionFailed, ierror.ConnectionLost):
        return 502, "reset", False
    return 502, "error", False


def describeFailure(failure) -> str:
    """
    A one-line reason for an upstream failure.  The Agent wraps what went
    wrong in L{ResponseFailed} and friends, whose own message is a list of
    reprs; this unwraps them.
    """
    reasons = getattr(failure.value, "reasons", None)
    if reasons:
        return "; ".join(describeFailure(r) for r in reasons)
    message = failure.getErrorMessage()
    return f"{failure.type.__name__}: {message}" if message else failure.type.__name__


_DETAIL = {
    "timeout": "did not answer in time",
    "connect_timeout": "did not accept the connection in time",
    "refused": "refused the connection",
    "reset": "closed the connection before answering",
    "error": "failed",
}


class RouteProxy(Resource):
    """
    Forward every request under one route's prefix to its replicas.
    """

    isLeaf = True

    def __init__(
        self,
        route: RouteSettings,
        replicas: ReplicaSet,
        *,
        agent,
        reactor,
        metrics: ProxyMetrics,
        trustForwarded: bool = False,
    ) -> None:
        super().__init__()
        self.route = route
        self.replicas = replicas
        self.agent = agent
        self.reactor = reactor
        self.metrics = metrics
        self.trustForwarded = trustForwarded

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
    One client request and its upstream request(s).
    """

    def __init__(self, proxy: RouteProxy, request) -> None:
        self.proxy = proxy
        self.request = request
        self.route = proxy.route.name
        incoming = request.requestHeaders
        self.hasBody = incoming.hasHeader(b"content-length") or incoming.hasHeader(
            b"transfer-encoding"
        )
        self.headers = upstreamRequestHeaders(request, proxy.trustForwarded)
        self.tried: list[Replica] = []
        self.replica: Replica | None = None
        self.pending = None  # the Agent's Deferred, until the response head
        self.forwarder: _BodyForwarder | None = None
        self.clientGone = False
        self.timedOut = False
        self.ended = False
        self._sentAt = 0.0
        self._timer = None
        request.notifyFinish().addErrback(self._clientLeft)

    # Sending.

    def start(self) -> None:
        replica = None
        sticky = self.proxy.route.sticky_cookie.encode("ascii")
        if sticky:
            value = self.request.getCookie(sticky)
            if value:
                replica = self.proxy.replicas.affinity(value, exclude=self.tried)
        if replica is None:
            replica = self.proxy.replicas.pick(exclude=self.tried)
        if replica is None:
            self._end("no_replica")
            replicas = self.proxy.replicas.replicas
            detail = (
                f"No replica of the {self.route} service is available"
                f" ({len(replicas)} known, all failing)."
                if replicas
                else f"No replica of the {self.route} service is running."
            )
            renderError(self.request, 502, detail, upstream=self.route)
            return
        self.tried.append(replica)
        self.replica = replica
        replica.inFlight += 1
        request = self.request
        self._sentAt = self.proxy.reactor.seconds()
        d = self.proxy.agent.request(
            request.method,
            replica.baseURL + request.uri,
            self.headers,
            self._bodyProducer(),
        )
        self.pending = d
        self._timer = self.proxy.reactor.callLater(
            self.proxy.route.timeout, self._timedOut
        )
        d.addCallbacks(self._gotResponse, self._failed)

    def _timedOut(self) -> None:
        self._timer = None
        self.timedOut = True
        if self.pending is not None:
            self.pending.cancel()

    def _stopTimer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _bodyProducer(self):
        """
        The request body, read again from the start on every attempt, or
        L{None} when the client sent none (so the pool may retry a GET on a
        pooled connection that the backend had just closed).
        """
        request = self.request
        if not self.hasBody or request.content is None:
            return None
        request.content.seek(0)
        return FileBodyProducer(request.content)

    # The response head, or why there is none.

    def _gotResponse(self, response) -> None:
        self.pending = None
        self._stopTimer()
        metrics = self.proxy.metrics
        metrics.responseSeconds.labels(self.route).observe(
            self.proxy.reactor.seconds() - self._sentAt
        )
        request = self.request
        sticky = self.proxy.route.sticky_cookie.encode("ascii")
        if sticky and self.replica is not None:
            for cookie in response.headers.getRawHeaders(b"set-cookie", []):
                name, _, rest = cookie.partition(b"=")
                if name.strip() == sticky:
                    value = rest.split(b";", 1)[0].strip()
                    self.proxy.replicas.remember(value, self.replica)
        request.setResponseCode(response.code, response.phrase)
        useResponseHeaders(response.headers, request)
        # Agent keeps Content-Length out of the headers; a known length is
        # passed on (so the body is not re-chunked), except where the status
        # or method means there is no body to measure.
        if (
            response.length is not UNKNOWN_LENGTH
            and request.method != b"HEAD"
            and response.code not in (204, 304)
        ):
            request.setHeader(b"content-length", b"%d" % (response.length,))
        self.forwarder = _BodyForwarder(self)
        response.deliverBody(self.forwarder)

    def _failed(self, failure) -> None:
        self.pending = None
        self._stopTimer()
        replica = self.replica
        self._release()
        if self.clientGone:
            self._end("client_gone_before_response")
            return
        status, outcome, nothingSent = classify(failure, self.timedOut)
        reason = f"{outcome}: {describeFailure(failure)}"
        if nothingSent and replica is not None:
            self.proxy.replicas.eject(replica, reason)
            if self.proxy.replicas.pick(exclude=self.tried) is not None:
                self.proxy.metrics.retries.labels(self.route).inc()
                self.start()
                return
        self._end(outcome)
        log.warn(
            "{route}: upstream {replica} {outcome}; answering {status}",
            event="upstream_failed",
            route=self.route,
            replica=replica.address if replica else "-",
            outcome=outcome,
            status=status,
            error=describeFailure(failure),
            request_id=getattr(self.request, "requestId", "-"),
        )
        renderError(
            self.request,
            status,
            f"The {self.route} service {_DETAIL[outcome]}.",
            upstream=self.route,
        )

    # The response body.

    def bodyEnded(self, reason) -> None:
        self._release()
        if self.clientGone:
            self._end("client_gone_during_body")
            return
        request = self.request
        request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            self._end("response")
            request.finish()
            return
        self._end("broken_body")
        log.warn(
            "{route}: upstream {replica} broke off the response body; aborting"
            " the client connection so it sees the truncation",
            event="upstream_body_broken",
            route=self.route,
            replica=self.replica.address if self.replica else "-",
            error=describeFailure(reason),
            request_id=getattr(request, "requestId", "-"),
        )
        request.channel.transport.abortConnection()

    # The client leaving.

    def _clientLeft(self, reason) -> None:
        if self.ended:
            return
        self.clientGone = True
        if self.pending is not None:
            self.pending.cancel()
        elif self.forwarder is not None:
            self.forwarder.abort()

    def _release(self) -> None:
        if self.replica is not None:
            self.replica.inFlight -= 1
            self.replica = None

    def _end(self, outcome: str) -> None:
        if not self.ended:
            self.ended = True
            self.proxy.metrics.outcome(self.route, outcome)


class _BodyForwarder(Protocol):
    """
    Writes the upstream body to the client as it arrives; the upstream
    transport is the client request's producer, so the client's pace sets
    the upstream's.
    """

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def connectionMade(self) -> None:
        self._exchange.request.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        if not self._exchange.clientGone:
            self._exchange.request.write(data)

    def connectionLost(self, reason) -> None:
        self._exchange.bodyEnded(reason)

    def abort(self) -> None:
        """
        Close the upstream connection: the backend sees the client leave.
        """
        self.transport.stopProducing()
