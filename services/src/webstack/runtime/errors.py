# -*- test-case-name: tests.test_channel -*-
"""
Small, clear error responses: an HTML page for browsers, JSON for clients that
ask for it (C{Accept: application/json}), the same facts in both.
"""

from __future__ import annotations

import json
from html import escape

from twisted.web import http
from twisted.web.resource import Resource

from .site import finishWith

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {phrase}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;
padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}code{{background:#f3f3f3;
padding:0 .2em}}</style></head>
<body><h1>{status} {phrase}</h1><p>{detail}</p>{extra}</body></html>
"""


def wantsJSON(request) -> bool:
    """
    Whether the client prefers JSON: its C{Accept} names
    C{application/json} (or any C{+json} type) and not C{text/html}.
    """
    accept = b",".join(request.requestHeaders.getRawHeaders(b"accept", [])).lower()
    return (b"json" in accept) and (b"text/html" not in accept)


def errorBody(
    request, status: int, detail: str, **facts: str | int | float | None
) -> bytes:
    """
    Set C{status} and the content type on C{request}, and return the body
    saying C{detail} (plus C{facts}, in JSON only as keys, in HTML as a list).
    """
    phrase = http.RESPONSES.get(status, b"Error").decode("ascii")
    request.setResponseCode(status)
    request.setHeader(b"cache-control", b"no-store")
    if wantsJSON(request):
        request.setHeader(b"content-type", b"application/json")
        document = {"status": status, "error": phrase, "detail": detail, **facts}
        return json.dumps(document).encode("utf-8") + b"\n"
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    extra = ""
    if facts:
        items = "".join(
            f"<li>{escape(k)}: <code>{escape(str(v))}</code></li>"
            for k, v in facts.items()
            if v is not None
        )
        extra = f"<ul>{items}</ul>"
    return _PAGE.format(
        status=status, phrase=escape(phrase), detail=escape(detail), extra=extra
    ).encode("utf-8")


def renderError(request, status: int, detail: str, **facts) -> None:
    """
    Write a complete error response on C{request} and finish it; for code
    that answers outside a C{render} method (a Deferred's errback).
    """
    finishWith(request, errorBody(request, status, detail, **facts))


class ErrorPage(Resource):
    """
    A resource that answers every request, for itself and for any path below
    it, with one error (L{errorBody}: HTML, or JSON for a client that asks).

    Used where Twisted's L{twisted.web.pages.errorPage} would be: that one
    flattens a template and so is sent chunked, and looks unlike every other
    error of the stack; this one is rendered at once and goes with its
    C{Content-Length}.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__()
        self.status = status
        self.detail = detail

    def render(self, request) -> bytes:
        return errorBody(request, self.status, self.detail)

    def getChild(self, path, request):
        return self
