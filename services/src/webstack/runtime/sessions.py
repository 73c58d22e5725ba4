# -*- test-case-name: tests.test_session -*-
"""
Sessions as every service that has them keeps them (the session service,
and the static service's C{.rpy} scripts): what Twisted's C{getSession}
and C{Site.makeSession} leave out.

  - Not cached.  A response of a session is that one client's; a shared
    cache that stored it would hand it to the next client.  Every request
    that looks its session up answers C{Cache-Control: private, no-store},
    set here, where the session is looked up, so no resource can forget it.
  - Its own cookie.  Twisted names the cookie C{TWISTED_SESSION} with
    C{Path=/} in every site, so two sites behind one front overwrite each
    other's.  Here each service names its cookie and scopes it to its
    routes' prefix, with C{HttpOnly} and C{SameSite=Lax}, and C{Secure}
    when the client reached the front over HTTPS (C{X-Forwarded-Proto:
    https} from a trusted proxy).
  - Sliding expiry.  Twisted refreshes a session only when it is asked for
    twice in one request; here every lookup refreshes it, so a session ends
    C{timeout} seconds after its last visit.
  - A bound.  Twisted makes a session for every request without a known
    cookie, and keeps it for its whole timeout: a client that drops its
    cookies can fill the process's memory.  Here a process holds at most
    C{maxSessions}; when it is full, a request that needs a new one is
    refused (L{SessionsFull}: 503 with C{Retry-After}).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from prometheus_client import Counter, Gauge
from twisted.web.server import Session

from .errors import errorBody
from .networks import TrustedProxies
from .site import ObservedRequest, finishWith

PRIVATE = b"private, no-store"
"""
The C{Cache-Control} of every response that looked its session up.
"""


class SessionsFull(Exception):
    """
    A new session was needed and the process holds as many as it may.

    @ivar retryAfter: whole seconds until the least recently visited session
        expires (unless it is visited first), making room.
    """

    def __init__(self, retryAfter: int) -> None:
        super().__init__(retryAfter)
        self.retryAfter = retryAfter


class BoundedSession(Session):
    """
    A L{Session} kept in its site's C{sessions} in the order of its visits:
    each L{touch} moves it to the end, so the first one is the least
    recently visited, and (all having one timeout) the next to expire.
    """

    def touch(self) -> None:
        super().touch()
        sessions = self.site.sessions
        if self.uid in sessions:
            sessions.move_to_end(self.uid)


class SiteSessions:
    """
    The sessions of one service: their cookie, their timeout, their bound,
    and their metrics.  L{install} puts them on the service's site.

    When the site is full, a request that needs a new session is refused
    with 503 and C{Retry-After}; the sessions held are kept.  The other
    choice, dropping the least recently used session to make room, lets
    anyone who can send C{maxSessions} requests without a cookie end every
    other client's session (their counts, their logins) without a trace.
    Refusing keeps what clients have, is loud (counted, and the client is
    told when to come back: the time until the oldest idle session expires,
    never more than C{timeout}), and heals by itself as idle sessions end.
    """

    def __init__(
        self,
        *,
        registry,
        cookieName: bytes,
        cookiePath: bytes,
        timeout: float,
        maxSessions: int,
        trustedProxies: TrustedProxies = TrustedProxies(),
    ) -> None:
        """
        @param registry: the service's own registry, where the sessions are
            counted (C{sessions_*}).
        @param cookieName: the session cookie's name, its own in the stack.
        @param cookiePath: the cookie's C{Path}: the prefix of the routes
            that use the sessions (C{b"/session/"}).
        @param timeout: seconds without a visit before a session expires.
        @param maxSessions: the most sessions the process holds at once.
        @param trustedProxies: the peers whose C{X-Forwarded-Proto} is
            believed (none by default).
        """
        self.cookieName = cookieName
        self.cookiePath = cookiePath
        self.timeout = timeout
        self.maxSessions = maxSessions
        self.trustedProxies = trustedProxies
        self.created = Counter("sessions_created_total", "Sessions made.", registry=registry)
        self.expired = Counter(
            "sessions_expired_total", "Sessions ended (timed out or expired).", registry=registry
        )
        self.refused = Counter(
            "sessions_refused_total",
            "Requests refused (503) because the process held its maximum of sessions.",
            registry=registry,
        )
        self.active = Gauge("sessions_active", "Sessions alive now.", registry=registry)
        self.sessionClass = self._sessionClass()

    def _sessionClass(self) -> type[BoundedSession]:
        created, expired, timeout = self.created.inc, self.expired.inc, self.timeout

        class ShortSession(BoundedSession):
            sessionTimeout = timeout

            def __init__(self, site, uid, reactor=None):
                super().__init__(site, uid, reactor)
                created()
                self.notifyOnExpire(expired)

        return ShortSession

    def install(self, site) -> None:
        """
        Make C{site}'s sessions these: their class, their ordered store, and
        a request class (a subclass of the site's) that looks them up here.
        """
        site.sessions = OrderedDict()
        site.sessionFactory = self.sessionClass
        site.requestFactory = type(
            "SessionRequest", (SessionRequest, site.requestFactory), {"siteSessions": self}
        )
        self.active.set_function(lambda: len(site.sessions))

    def makeSession(self, site) -> Session:
        """
        A new session of C{site}.

        @raise SessionsFull: if C{site} holds C{maxSessions} already.
        """
        sessions = site.sessions
        if len(sessions) >= self.maxSessions:
            self.refused.inc()
            oldest = next(iter(sessions.values()))
            left = oldest.lastModified + oldest.sessionTimeout - site.reactor.seconds()
            raise SessionsFull(max(1, math.ceil(left)))
        return site.makeSession()

    def cookie(self, uid: bytes, secure: bool) -> bytes:
        """
        The C{Set-Cookie} value that gives a client session C{uid}.
        """
        value = b"%s=%s; Path=%s; HttpOnly; SameSite=Lax" % (self.cookieName, uid, self.cookiePath)
        return value + b"; Secure" if secure else value

    def reachedOverHTTPS(self, request) -> bool:
        """
        Whether C{request}'s client is on HTTPS: its own connection, or the
        front's, as a trusted proxy's C{X-Forwarded-Proto} says.
        """
        return request.isSecure() or self.trustedProxies.forwardedHTTPS(request)


class SessionRequest(ObservedRequest):
    """
    A request whose C{getSession} is its site's L{SiteSessions}'.  Made by
    L{SiteSessions.install}, which sets C{siteSessions}.

    One session per request, whatever C{forceNotSecure} says: behind the
    front a service sees plain HTTP and learns of HTTPS from the front, so
    Twisted's separate session for HTTPS requests would never be used; the
    cookie is C{Secure} instead whenever the client's connection was.
    """

    siteSessions: SiteSessions

    def getSession(self, sessionInterface=None, forceNotSecure=False):
        """
        The client's session: the one its cookie names, refreshed, or else a
        new one and the cookie naming it.  Either way the response is marked
        not to be stored by any cache.

        @raise SessionsFull: if a new one is needed and none can be made;
            the request then answers 503 (L{processingFailed}).
        """
        self.setHeader(b"cache-control", PRIVATE)
        sessions = self.siteSessions
        session = self._insecureSession
        if session is None or self.site.sessions.get(session.uid) is not session:
            uid = self.getCookie(sessions.cookieName)
            session = self.site.sessions.get(uid) if uid else None
            if session is None:
                session = sessions.makeSession(self.site)
                self.cookies.append(sessions.cookie(session.uid, sessions.reachedOverHTTPS(self)))
            self._insecureSession = self._secureSession = session
        session.touch()
        if sessionInterface:
            return session.getComponent(sessionInterface)
        return session

    def processingFailed(self, reason):
        """
        A L{SessionsFull} is the service at its bound, not a fault: 503 with
        C{Retry-After}, and nothing logged but the access line.  Anything
        else is Twisted's 500.
        """
        if reason.check(SessionsFull) and not self.startedWriting:
            retryAfter = reason.value.retryAfter
            self.setHeader(b"retry-after", b"%d" % (retryAfter,))
            finishWith(
                self,
                errorBody(
                    self,
                    503,
                    "This service holds as many sessions as it may; try again later.",
                    retry_after=retryAfter,
                ),
            )
            return None
        return super().processingFailed(reason)
