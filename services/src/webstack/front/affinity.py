# -*- test-case-name: tests.test_front_affinity -*-
"""
Stickiness without shared memory: the front's own routing cookie.

A sticky route (C{sticky = true}; the session service, whose sessions live
in one replica's memory) must send a client back to the replica that served
it.  Remembering that in a table of the front's process does not survive
several front workers, several front replicas or a restart of the front.  So
the front does what HAProxy's C{cookie ... insert} does: it gives the client
a cookie of its own that names the replica, and reads it back on the next
request.  Any front process that holds the same key reads it the same way;
nothing is shared at run time.

The value is not the replica's address (that would tell every client the
inside of the network) but an HMAC of it under the key every front worker
and replica shares (C{front.route_key} or C{front.route_key_file}): opaque,
stable for as long as the replica keeps its address and the key its value,
and impossible to forge without the key.  A cookie that is missing, names no
current replica (one that went away, or a replica of another key) or was
made up falls back to balancing, and the response then gives the client a
cookie for the replica that did answer.

Everything here is pure: no reactor, no I/O; the proxy calls L{choose} on the
request and L{needsSetting}/L{setCookie} on the response.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from .settings import RouteSettings, Settings

DEFAULT_NAME = b"WEBSTACK_ROUTE"

# What the MAC covers besides the address, so that this key's MACs mean
# nothing anywhere else it might (wrongly) be used as well.
_CONTEXT = b"webstack-route:"

# 22 base64url characters: 132 bits of the HMAC, more than anyone can guess,
# and short enough to cost nothing on every request.
TOKEN_LENGTH = 22

# RFC 6265 cookie-name (an RFC 7230 token) and what a Path attribute may hold.
_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_PATH = re.compile(rb"/[\x21-\x3a\x3c-\x7e]*\Z")

# Addresses come and go with the replicas (compose --scale, restarts): past
# this many, the token cache starts over instead of growing for ever.
_CACHE_LIMIT = 1024


class ReplicaLike(Protocol):
    """
    Whatever the proxy balances over: only its C{"host:port"} is used.
    """

    @property
    def address(self) -> str: ...


R = TypeVar("R", bound=ReplicaLike)


def validCookieName(name: bytes) -> bool:
    """
    Whether C{name} may be a cookie's name (an RFC 7230 token).
    """
    return bool(_NAME.match(name))


def validCookiePath(path: bytes) -> bool:
    """
    Whether C{path} may be a cookie's C{Path} as it is: absolute, printable
    ASCII, no space and no C{;}.
    """
    return bool(_PATH.match(path))


def cookieValue(cookieHeaders: Iterable[bytes], name: bytes) -> bytes | None:
    """
    The value of the first cookie called exactly C{name} in a request's
    C{Cookie} headers, or L{None}.

    Several headers (HTTP/2 sends one per cookie, and some clients repeat
    the header) are read in order; pairs are split on C{;} and stripped of
    spaces; a pair with no C{=} is skipped; names are compared exactly, so
    C{webstack_route} or C{XWEBSTACK_ROUTE} are someone else's cookies.  One
    pair of double quotes around the value (allowed by RFC 6265) is dropped.
    The first occurrence wins, as in browsers, which send the cookie with
    the most specific path first.
    """
    for header in cookieHeaders:
        for pair in header.split(b";"):
            key, sep, value = pair.partition(b"=")
            if not sep or key.strip(b" \t") != name:
                continue
            value = value.strip(b" \t")
            if len(value) >= 2 and value[:1] == value[-1:] == b'"':
                value = value[1:-1]
            return value
    return None


class RouteCookie:
    """
    The routing cookie of one sticky route.

    Made once per route when the front starts; every method is cheap and
    safe to call on every request.

    @ivar name: the cookie's name.
    @ivar path: the route's prefix, the cookie's C{Path}: the client sends it
        back only on that route, and the cookies of two sticky routes never
        meet.
    """

    def __init__(self, key: bytes, path: str | bytes, name: bytes = DEFAULT_NAME) -> None:
        """
        @param key: the key shared by every front worker and replica; the
            same key gives the same cookie for the same replica everywhere.
        @param path: the route's prefix (C{/session/}).
        @param name: the cookie's name.

        @raise ValueError: if the key is empty, or the name or path could
            not be put in a C{Set-Cookie} header as they are.
        """
        if not key:
            raise ValueError("a routing cookie needs a non-empty key")
        if isinstance(path, str):
            path = path.encode("ascii")
        if not validCookieName(name):
            raise ValueError(f"{name!r} is not a valid cookie name")
        if not validCookiePath(path):
            raise ValueError(f"{path!r} is not a valid cookie path")
        self.name = name
        self.path = path
        self._key = key
        self._tokens: dict[str, bytes] = {}
        self._prefix = name + b"="
        self._attributes = b"; Path=" + path + b"; HttpOnly; SameSite=Lax"

    def __repr__(self) -> str:
        # Never the key.
        return f"<RouteCookie {self.name.decode('ascii')} Path={self.path.decode('ascii')}>"

    def token(self, address: str) -> bytes:
        """
        The cookie's value for the replica at C{address} (C{"host:port"}).

        An HMAC-SHA256 of the address under the key, base64url, cut to
        L{TOKEN_LENGTH} characters: the same in every front process with the
        same key, different under another key or for another address, and
        telling nothing of the address.
        """
        token = self._tokens.get(address)
        if token is None:
            mac = hmac.new(self._key, _CONTEXT + address.encode("utf-8"), hashlib.sha256)
            token = base64.urlsafe_b64encode(mac.digest())[:TOKEN_LENGTH]
            if len(self._tokens) >= _CACHE_LIMIT:
                self._tokens.clear()
            self._tokens[address] = token
        return token

    def value(self, cookieHeaders: Iterable[bytes]) -> bytes | None:
        """
        This cookie's value in a request's C{Cookie} headers, or L{None}.
        """
        return cookieValue(cookieHeaders, self.name)

    def choose(self, cookieHeaders: Iterable[bytes], replicas: Sequence[R]) -> R | None:
        """
        The replica a request's cookie names, among C{replicas}.

        @param cookieHeaders: the request's raw C{Cookie} headers
            (C{request.requestHeaders.getRawHeaders(b"cookie", [])}).
        @param replicas: the replicas the request may go to (the available
            ones, less any already tried).

        @return: the replica, or L{None} when there is no cookie or it names
            none of them (unknown, gone, unavailable, forged): balance then.
        """
        value = self.value(cookieHeaders)
        if value is None or len(value) != TOKEN_LENGTH:
            return None
        for replica in replicas:
            # compare_digest: how long a wrong value takes to be refused says
            # nothing of how close it came to a right one.
            if hmac.compare_digest(value, self.token(replica.address)):
                return replica
        return None

    def needsSetting(self, cookieHeaders: Iterable[bytes], address: str) -> bool:
        """
        Whether the response from the replica at C{address} must give the
        client the cookie: the request had none, or one that does not name
        this replica (another replica's, when that one failed or went away;
        or a value no key made).  A client that sent the right one is not
        sent it again.
        """
        value = self.value(cookieHeaders)
        return value is None or not hmac.compare_digest(value, self.token(address))

    def setCookie(self, address: str, secure: bool = False) -> bytes:
        """
        The C{Set-Cookie} header value naming the replica at C{address}.

        C{HttpOnly}: no script needs it.  C{SameSite=Lax}: like the session
        cookie it goes with.  No C{Max-Age} or C{Expires}: it lasts as long
        as the browser session, like HAProxy's inserted cookie; the session
        it serves expires on its replica much sooner anyway.

        @param secure: add C{Secure}, when the client came over https (so
            the cookie is never sent in clear afterwards).
        """
        header = self._prefix + self.token(address) + self._attributes
        return header + b"; Secure" if secure else header

    def strip(self, cookieHeaders: Iterable[bytes]) -> list[bytes]:
        """
        The request's C{Cookie} headers without this cookie, to forward to
        the replica (HAProxy's C{indirect}): the routing cookie is the
        front's business, and a service need not see it.  Headers left
        empty are dropped; the other pairs are kept as they were sent.
        """
        kept = []
        for header in cookieHeaders:
            if self.name not in header:
                kept.append(header)
                continue
            pairs = [
                pair.strip(b" \t")
                for pair in header.split(b";")
                if pair.partition(b"=")[0].strip(b" \t") != self.name
            ]
            rest = b"; ".join(pair for pair in pairs if pair)
            if rest:
                kept.append(rest)
        return kept


def routeCookie(settings: Settings, route: RouteSettings) -> RouteCookie | None:
    """
    The routing cookie of C{route}, or L{None} if the route is not sticky.

    C{settings.routeKey} is the key L{loadSettings
    <webstack.front.settings.loadSettings>} read at start-up (it refuses to
    start with a sticky route and no key).
    """
    if not route.sticky:
        return None
    return RouteCookie(
        settings.routeKey, route.prefix, settings.route_cookie.encode("ascii")
    )
