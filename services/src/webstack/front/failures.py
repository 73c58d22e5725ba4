# -*- test-case-name: tests.test_front_units -*-
"""
What went wrong upstream, and what that means for the client.

The front's own HTTP client (L{webstack.front.client}) reports every failure as
an L{UpstreamFailure} naming its I{kind}; this module alone turns a kind into
the status the client gets, the outcome counted in metrics and logs, and
whether the request may be tried on another replica.  Nothing here matches
exception text.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import error as ierror
from twisted.python.failure import Failure

REFUSED = "refused"
"""
The replica refused the connection: nothing was sent.
"""
CONNECT_TIMEOUT = "connect_timeout"
"""
The replica did not accept the connection in time (a container that is gone
answers nothing): nothing was sent.
"""
RESET = "reset"
"""
The connection closed (or was reset) after the request was sent and before a
complete response head arrived.
"""
TIMEOUT = "timeout"
"""
No response head within the route's timeout: the front gave up.
"""
ERROR = "error"
"""
The replica answered something that is not HTTP/1.1 the front can forward
(a malformed head, an upgrade, a head beyond the size limit), or, to one of
the front's own fetches, a body beyond that fetch's limit.
"""

DETAIL = {
    TIMEOUT: "did not answer in time",
    CONNECT_TIMEOUT: "did not accept the connection in time",
    REFUSED: "refused the connection",
    RESET: "closed the connection before answering",
    ERROR: "failed",
}
"""
How each kind is said to the client: "The async service ..."
"""


@dataclass(frozen=True)
class Verdict:
    """
    What an upstream failure means for the client.

    @ivar status: the status to answer.
    @ivar outcome: the outcome's name in metrics and logs.
    @ivar nothingSent: whether the request never reached the replica, so it
        may be tried on another (any method) and the replica ejected.
    """

    status: int
    outcome: str
    nothingSent: bool


def classify(kind: str) -> Verdict:
    """
    The verdict for a failure of C{kind} (one of this module's constants).
    """
    if kind == TIMEOUT:
        return Verdict(504, TIMEOUT, False)
    if kind in (REFUSED, CONNECT_TIMEOUT):
        return Verdict(502, kind, True)
    if kind == RESET:
        return Verdict(502, RESET, False)
    return Verdict(502, ERROR, False)


def connectFailureKind(reason: Failure) -> str:
    """
    The kind of a failure to connect: L{CONNECT_TIMEOUT} or L{REFUSED} (any
    other connect error, a host that is unreachable included, is a refusal:
    nothing was sent either way).
    """
    if reason.check(ierror.TimeoutError):
        return CONNECT_TIMEOUT
    return REFUSED


def describeFailure(reason: Failure) -> str:
    """
    A one-line reason for an upstream failure, for logs and the landing page.
    """
    value = reason.value
    message = reason.getErrorMessage()
    name = type(value).__name__
    return f"{name}: {message}" if message and message != name else name


class UpstreamFailure(Exception):
    """
    An upstream exchange failed; C{kind} says how (this module's constants).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
