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


def _connectionTokens(headers: Headers) -> set[bytes]:
    tokens = set()
    for value in headers.getRawHeaders(b"connection", []):
        tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def stripHopByHop(headers: Headers, drop: frozenset[bytes] = frozenset()) -> Headers:
    """
    Remove from C{headers}, in place, the hop-by-hop headers, those named by
    C{Connection}, and those in C{drop}; return C{headers}.

    In place, because copying every header of every message into a new
    L{Headers} (which checks each value again) costs more than the rest of
    an exchange.
    """
    skip = HOP_BY_HOP | _connectionTokens(headers) | drop
    found = [name for name, _ in headers.getAllRawHeaders() if name.lower() in skip]
    for name in found:
        headers.removeHeader(name)
    return headers


def upstreamRequestHeaders(request, trustForwarded: bool) -> Headers:
    """
    The headers to send upstream for C{request}: its end-to-end headers (the
    client's C{Host} kept, so the backend builds URLs that point at the
    front), plus C{X-Forwarded-For}, C{-Proto} and C{-Host}.  The client
    request's own L{Headers} are edited and used.

    @param trustForwarded: whether the client is itself a trusted proxy, whose
        C{X-Forwarded-*} are kept and extended; otherwise they are replaced,
        since any client can send them.
    """
    headers = request.requestHeaders
    client = getattr(request.getClientAddress(), "host", "unknown").encode("ascii")
    proto = b"https" if request.isSecure() else b"http"
    host = headers.getRawHeaders(b"host", [b""])[0]

    if trustForwarded:
        chain = b", ".join(headers.getRawHeaders(b"x-forwarded-for", []))
        forwardedFor = chain + b", " + client if chain else client
        proto = headers.getRawHeaders(b"x-forwarded-proto", [proto])[0]
        host = headers.getRawHeaders(b"x-forwarded-host", [host])[0]
    else:
        forwardedFor = client
    stripHopByHop(headers, drop=_REQUEST_ONLY)
    headers.setRawHeaders(b"x-forwarded-for", [forwardedFor])
    headers.setRawHeaders(b"x-forwarded-proto", [proto])
    if host:
        headers.setRawHeaders(b"x-forwarded-host", [host])
    elif not trustForwarded:
        headers.removeHeader(b"x-forwarded-host")
    return headers


def useResponseHeaders(upstream: Headers, request) -> None:
    """
    Make the upstream response's end-to-end headers C{request}'s response
    headers (its C{Server} and C{Date} replacing the front's own), keeping
    the front's C{X-Request-Id} if the upstream sent none.
    """
    own = request.responseHeaders.getRawHeaders(b"x-request-id")
    stripHopByHop(upstream)
    if own and not upstream.hasHeader(b"x-request-id"):
        upstream.setRawHeaders(b"x-request-id", own)
    request.responseHeaders = upstream
