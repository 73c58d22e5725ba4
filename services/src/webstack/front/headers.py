# -*- test-case-name: tests.test_front_units -*-
"""
Which headers cross the front, in each direction.

Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, not the
message, so they are dropped both ways, together with any header that a
C{Connection} header names (except those the front sets itself).  Repeated
headers (several C{Set-Cookie}) are kept as they are, in order.

What names the client is the front's to say: a client's C{X-Forwarded-*},
C{Forwarded} and C{X-Real-IP} are replaced or dropped (kept only from a
trusted proxy), and so is any header that is one of those with C{_} for
C{-}, which CGI and WSGI would otherwise read as the same variable.
"""

from __future__ import annotations

from twisted.web.http_headers import Headers, _nameEncoder

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Not hop-by-hop, but answered by the front itself: it has already read the
# whole body (and sent any 100 Continue), and it sets the body's length anew.
_REQUEST_ONLY = frozenset({b"expect", b"content-length"})
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
# Other ways of naming the client that a backend (or its framework) may
# believe: only a trusted proxy's are passed on.
_CLIENT_CLAIMS = frozenset({b"forwarded", b"x-real-ip"})
_REQUEST_SKIP = HOP_BY_HOP | _REQUEST_ONLY | _FORWARDED | _CLIENT_CLAIMS
_TRUSTED_SKIP = HOP_BY_HOP | _REQUEST_ONLY | _FORWARDED
# Headers the front itself sets (the runtime sets X-Request-Id): never
# removed because a client's Connection names them, and no client header
# that a CGI or WSGI gateway would map to the same variable (X_Forwarded_For
# and X-Forwarded-For are both HTTP_X_FORWARDED_FOR) is passed on.
_FRONT_SET = _FORWARDED | _CLIENT_CLAIMS | {b"x-request-id"}
_KEPT_WHATEVER_CONNECTION_SAYS = frozenset({b"host", b"x-request-id"})

# The names as L{Headers} keys its own table (documented as C{_rawHeaders}):
# looked up there on every proxied request, without getRawHeaders' and
# hasHeader's name encoding each time.
HOST, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING = (
    _nameEncoder.encode(name)
    for name in (b"host", b"connection", b"content-length", b"transfer-encoding")
)


_COLON_SPACE = b": "


def _connectionTokens(headers: Headers) -> set[bytes]:
    tokens = set()
    for value in headers.getRawHeaders(b"connection", []):
        tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def upstreamRequestHead(
    request, trustForwarded: bool, bodyLength: int | None
) -> bytes:
    """
    The request head to send upstream for C{request}, serialized: its
    request line, its end-to-end headers (the client's C{Host} kept, so the
    backend builds URLs that point at the front), C{X-Forwarded-For},
    C{-Proto} and C{-Host}, and C{Content-Length} when there is a body.

    Serialized at once rather than built as a L{Headers} for a client to
    serialize: the incoming values were checked by the server's parser
    (no CR or LF can be in them), and a copy per request is what made the
    old path slow.

    @param trustForwarded: whether the client is itself a trusted proxy, whose
        C{X-Forwarded-*} are kept and extended; otherwise they are replaced,
        since any client can send them.
    @param bodyLength: the body's length, or L{None} for no body.
    """
    headers = request.requestHeaders
    client = getattr(request.getClientAddress(), "host", "unknown").encode("ascii")
    proto = b"https" if request.isSecure() else b"http"
    raw = headers._rawHeaders
    host = (raw.get(HOST) or [b""])[0]
    if trustForwarded:
        chain = b", ".join(headers.getRawHeaders(b"x-forwarded-for", []))
        forwardedFor = chain + b", " + client if chain else client
        proto = headers.getRawHeaders(b"x-forwarded-proto", [proto])[0]
        forwardedHost = headers.getRawHeaders(b"x-forwarded-host", [host])[0]
    else:
        forwardedFor = client
        forwardedHost = host

    skip = _TRUSTED_SKIP if trustForwarded else _REQUEST_SKIP
    if CONNECTION in raw:
        # Host and the request id are the message's own, whatever a
        # client's Connection names.
        skip = skip | (_connectionTokens(headers) - _KEPT_WHATEVER_CONNECTION_SAYS)
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method, request.uri)]
    for name, values in headers.getAllRawHeaders():
        lower = name.lower()
        if lower in skip:
            continue
        # find(), not `in`: five times cheaper on CPython 3.11 (see
        # LimitedHTTPChannel._wholeHead).
        if lower.find(b"_") >= 0 and lower.replace(b"_", b"-") in _FRONT_SET:
            continue
        for value in values:
            lines.append(b"%s: %s\r\n" % (name, value))
    if not host:
        # HTTP/1.1 requires a Host: an HTTP/1.0 client may have sent none.
        address = request.getHost()
        lines.append(b"Host: %s:%d\r\n" % (address.host.encode("ascii"), address.port))
    lines.append(b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n" % (forwardedFor, proto))
    if forwardedHost:
        lines.append(b"X-Forwarded-Host: %s\r\n" % (forwardedHost,))
    if bodyLength is not None:
        lines.append(b"Content-Length: %d\r\n" % (bodyLength,))
    lines.append(b"\r\n")
    return b"".join(lines)


def forwardedHeaderLines(
    upstream: list[tuple[bytes, bytes]],
    lowered: list[bytes] | None = None,
) -> tuple[bytes, set[bytes]]:
    """
    The header lines of the client's response from the upstream response's
    raw headers, serialized, and their names lowercased: its end-to-end
    headers, as they came (names as the upstream spelled them, repeated
    ones in order, its C{Server} and C{Date} among them).  For
    L{webstack.runtime.site.ObservedRequest.forwardHead}.

    Serialized at once, like the request head (L{upstreamRequestHead}):
    httptools has already refused a name that is not a token and a value
    with CR, LF or NUL in it; a value with CR or LF is still made one line
    here, as L{Headers} would, should a parser ever let one through.

    @param lowered: the names of C{upstream} lowercased, in order, if the
        caller has them already (the front's client lowercases them to look
        at the framing headers): made here otherwise.
    """
    if lowered is None:
        lowered = [name.lower() for name, _ in upstream]
    names = set(lowered)
    if names.isdisjoint(HOP_BY_HOP):
        # Nothing to drop (most responses, a Content-Length and no
        # Connection): all in one join, and one look for a CR or LF that is
        # not a line's end.  A third of the cost of the line-by-line way.
        # Each pair joined by ": " and the lines by CRLF: cheaper than
        # formatting each line with %.
        joined = b"\r\n".join(map(_COLON_SPACE.join, upstream)) + b"\r\n" if upstream else b""
        count = len(upstream)
        if joined.count(b"\n") == count and joined.count(b"\r") == count:
            return joined, names
    skip = HOP_BY_HOP
    if b"connection" in lowered:
        skip = skip | {
            token.strip().lower()
            for lower, (_, value) in zip(lowered, upstream)
            if lower == b"connection"
            for token in value.split(b",")
        }
    lines = []
    names.clear()
    for lower, (name, value) in zip(lowered, upstream):
        if lower in skip:
            continue
        if b"\n" in value or b"\r" in value:
            value = b" ".join(value.splitlines())
        lines.append(b"%s: %s\r\n" % (name, value))
        names.add(lower)
    return b"".join(lines), names
