# -*- test-case-name: tests.test_auth_units -*-
"""
One request's login, watched where it happens: the throttle learns each
credential check's own outcome, for the user name the guard itself decoded.

The throttle used to read the C{Authorization} header a second time, with
its own decoder, and to judge by the response's status once it was
finished.  Both could be fooled: a Basic header the guard decodes and a
strict decoder does not (unpadded base64) named no user; a Digest header
with two C{username} fields named one to the throttle and the other to the
guard, so a success of one reset the other; and a client that left during
the check (bcrypt takes a while) ended its request with the default status,
200, which counted as a success.

Here the guard (Twisted's L{HTTPAuthSessionWrapper}, unchanged) is given,
for each request, an L{ObservedLogin} in place of the L{Portal}.  It finds
the checker as the portal does, and sees what the checker says:

  - a user name locked out is refused before any check (429);
  - a check that fails counts a failure for that user name and for the
    client's address, whether or not the client is still there;
  - a check that passes resets the failures of the avatar id it gave (and of
    the address), and of nobody else;
  - a check refused because every check thread is busy and the queue is
    full is answered 503 with C{Retry-After} and counts as nothing;
  - a client gone by the time the outcome is known gets nothing written
    (rendering an answer to it would raise in C{Request.finish}).

The refusals reach the client as the resource of a successful login: the
guard renders whatever resource a login gives, and a failed login other than
L{UnauthorizedLogin} would be its 500.
"""

from __future__ import annotations

import math

from twisted.cred.error import LoginFailed, Unauthorized
from twisted.internet.defer import maybeDeferred, succeed
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from webstack.runtime.errors import errorBody

from .checkpool import ChecksBusy
from .throttle import FailureThrottle

_MAX_KEY_NAME = 128


def userKey(username: bytes | str) -> str:
    """
    The throttle's key for a user name, as a checker reads it.
    """
    if isinstance(username, bytes):
        username = username.decode("utf-8", "replace")
    return "user:" + username[:_MAX_KEY_NAME]


SCHEMES = ("basic", "digest", "other")


def schemeLabel(header: bytes) -> str:
    """
    The scheme of an C{Authorization} header as a metric label: one of
    L{SCHEMES}, whatever the client sent (split as the guard splits it).
    """
    scheme = header.split(b" ", 1)[0].lower()
    if scheme == b"basic":
        return "basic"
    if scheme == b"digest":
        return "digest"
    return "other"


class Judge:
    """
    What the outcomes of logins do: count them, feed the throttle, log the
    lockouts.  One for the service; L{ObservedLogin} calls it per request.
    """

    def __init__(self, throttle: FailureThrottle, metrics, log) -> None:
        self.throttle = throttle
        self._metrics = metrics
        self._log = log

    def passed(self, scheme: str, keys: list[str]) -> None:
        self._metrics["attempts"].labels(scheme, "ok").inc()
        for key in keys:
            self.throttle.succeeded(key)

    def failed(self, scheme: str, keys: list[str]) -> None:
        self._metrics["attempts"].labels(scheme, "failed").inc()
        for key in keys:
            if self.throttle.failed(key):
                self._metrics["lockouts"].inc()
                self._log.warn(
                    "auth: {key} locked out after repeated failures", event="lockout", key=key
                )

    def lockedOut(self, *keys: str) -> Resource | None:
        """
        The 429 for C{keys}, if any of them is locked out now.
        """
        wait = self.throttle.retryAfter(*keys)
        if not wait:
            return None
        self._metrics["throttled"].inc()
        return RetryLater(429, "Too many failed logins", math.ceil(wait))

    def busy(self, retryAfter: int) -> Resource:
        self._metrics["busy"].inc()
        return RetryLater(503, "Too many password checks at once", retryAfter)


def _noLogout() -> None:
    pass


class ObservedLogin:
    """
    The portal as one request's guard sees it (see the module's docstring).

    @param address: the throttle's key for the client's address.
    @param scheme: the C{Authorization} scheme, as a label (L{schemeLabel}).
    """

    def __init__(self, portal, judge: Judge, request, address: str, scheme: str) -> None:
        self._portal = portal
        self._judge = judge
        self._address = address
        self._scheme = scheme
        self.consulted = False
        self.gone = False
        request.notifyFinish().addErrback(self._lost)

    def _lost(self, reason) -> None:
        self.gone = True

    def login(self, credentials, mind, *interfaces):
        self.consulted = True
        username = getattr(credentials, "username", None)
        if username is None:
            return self._portal.login(credentials, mind, *interfaces)
        user = userKey(username)
        refusal = self._judge.lockedOut(user)
        if refusal is not None:
            return succeed((IResource, refusal, _noLogout))
        checker = self._checkerFor(credentials)
        if checker is None:
            return self._portal.login(credentials, mind, *interfaces)
        d = maybeDeferred(checker.requestAvatarId, credentials)
        d.addCallbacks(
            self._passed,
            self._failed,
            callbackArgs=(mind, interfaces),
            errbackArgs=(user,),
        )
        return d

    def _checkerFor(self, credentials):
        for interface, checker in self._portal.checkers.items():
            if interface.providedBy(credentials):
                return checker
        return None

    def _passed(self, avatarId, mind, interfaces):
        self._judge.passed(self._scheme, [self._address, userKey(avatarId)])
        if self.gone:
            return (IResource, Gone(), _noLogout)
        return self._portal.realm.requestAvatar(avatarId, mind, *interfaces)

    def _failed(self, failure, user: str):
        if failure.check(Unauthorized, LoginFailed):
            self._judge.failed(self._scheme, [self._address, user])
            refusal = None  # the guard's own 401, with its challenges
        elif failure.check(ChecksBusy):
            refusal = self._judge.busy(failure.value.retryAfter)
        else:
            return failure  # the guard logs it and answers 500: a fault of ours
        if self.gone:
            return (IResource, Gone(), _noLogout)
        if refusal is None:
            return failure
        return (IResource, refusal, _noLogout)

    def undecoded(self) -> None:
        """
        The guard refused the header without a login (an unknown scheme,
        Basic that is not base64 of C{user:password}, a Digest response to
        no challenge of ours): a failure of the address alone.
        """
        self._judge.failed(self._scheme, [self._address])


class RetryLater(Resource):
    """
    C{status} with C{Retry-After: seconds}: the lockout's 429, or the 503 of
    a full queue of password checks.
    """

    isLeaf = True

    def __init__(self, status: int, what: str, seconds: int) -> None:
        super().__init__()
        self.status = status
        self.what = what
        self.seconds = seconds

    def render(self, request):
        request.setHeader(b"retry-after", b"%d" % (self.seconds,))
        return errorBody(
            request,
            self.status,
            f"{self.what}; try again in {self.seconds} s.",
            retry_after=self.seconds,
        )


class Gone(Resource):
    """
    The answer to a client that has left: nothing, and no finish.
    """

    isLeaf = True

    def render(self, request):
        return NOT_DONE_YET

