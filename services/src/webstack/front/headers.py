# -*- test-case-name: webstack.tests.test_front_units -*-
"""
Which headers cross the front, in each direction.

Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, not the
message, so they are dropped both ways, together with any header that a
C{Connection} header names.  Repeated headers (several C{Set-Cookie}) are kept
as they are: everything is copied with C{getAllRawHeaders}, never with
C{getAllHeaders}, which keeps only the last value of each.
"""

from __future__ import annotations

from twisted.web.http_headers import Headers

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

_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")


def _connectionTokens(headers: Headers) -> set[bytes]:
    tokens = set()
    for value in headers.getRawHeaders(b"connection", []):
        tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def endToEnd(headers: Headers, drop: frozenset[bytes] = frozenset()) -> Headers:
    """
    A copy of C{headers} without hop-by-hop headers, those named by
    C{Connection}, and those in C{drop}.
    """
    skip = HOP_BY_HOP | _connectionTokens(headers) | drop
    kept = Headers()
    for name, values in headers.getAllRawHeaders():
        if name.lower() not in skip:
            kept.setRawHeaders(name, list(values))
    return kept


def upstreamRequestHeaders(request, trustForwarded: bool) -> Headers:
    """
    The headers to send upstream for C{request}: its end-to-end headers (the
    client's C{Host} kept, so the backend builds URLs that point at the
    front), plus C{X-Forwarded-For}, C{-Proto} and C{-Host}.

    @param trustForwarded: whether the client is itself a trusted proxy, whose
        C{X-Forwarded-*} are kept and extended; otherwise they are replaced,
        since any client can send them.
    """
    incoming = request.requestHeaders
    headers = endToEnd(incoming, drop=_REQUEST_ONLY)
    client = getattr(request.getClientAddress(), "host", "unknown").encode("ascii")
    proto = b"https" if request.isSecure() else b"http"
    host = incoming.getRawHeaders(b"host", [b""])[0]

    if trustForwarded:
        chain = b", ".join(incoming.getRawHeaders(b"x-forwarded-for", []))
        forwardedFor = chain + b", " + client if chain else client
        proto = incoming.getRawHeaders(b"x-forwarded-proto", [proto])[0]
        host = incoming.getRawHeaders(b"x-forwarded-host", [host])[0]
    else:
        forwardedFor = client
        for name in _FORWARDED:
            headers.removeHeader(name)
    headers.setRawHeaders(b"x-forwarded-for", [forwardedFor])
    headers.setRawHeaders(b"x-forwarded-proto", [proto])
    if host:
        headers.setRawHeaders(b"x-forwarded-host", [host])
    return headers


def copyResponseHeaders(upstream: Headers, request) -> None:
    """
    Put the upstream response's end-to-end headers on C{request}'s response,
    replacing what the front's own L{Request} set (C{Server}, C{Date}).
    """
    for name, values in endToEnd(upstream).getAllRawHeaders():
        request.responseHeaders.setRawHeaders(name, list(values))
