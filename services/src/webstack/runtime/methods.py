# -*- test-case-name: tests.test_hostile -*-
"""
Request methods, as a client may send any token.

  - Metrics: see L{webstack.runtime.metrics.methodLabel}.
  - Answers: Twisted answers a method a resource has no C{render_*} for with
    C{405} only for GET, HEAD and POST, and with C{501 Not Implemented} for
    anything else (C{TRACE}, C{PROPFIND}, made-up ones).  A 5xx says the
    server failed; here the client chose the method, so every one gets C{405}
    with C{Allow}, in the stack's own error page (L{MethodGuard}).
"""

from __future__ import annotations

from twisted.web.resource import IResource
from twisted.web.error import UnsupportedMethod
from zope.interface import implementer

from .errors import errorBody


@implementer(IResource)
class MethodGuard:
    """
    Render C{resource}, answering C{405} with C{Allow} (RFC 9110 section
    15.5.6) where it has no way to render the request's method.

    Only requests whose method Twisted would answer with 501 are given one
    (see L{webstack.runtime.site.ObservedRequest.render}); HEAD keeps
    Twisted's fallback to GET.
    """

    isLeaf = True

    def __init__(self, resource) -> None:
        self._resource = resource

    def render(self, request):
        try:
            return self._resource.render(request)
        except UnsupportedMethod as e:
            allowed = b", ".join(e.allowedMethods)
            request.setHeader(b"allow", allowed)
            return errorBody(
                request,
                405,
                f"{request.method.decode('ascii', 'replace')[:32]} is not allowed here.",
                allow=allowed.decode("ascii", "replace"),
            )

    def getChildWithDefault(self, name, request):  # pragma: no cover - leaf
        return self._resource.getChildWithDefault(name, request)

    def putChild(self, path, child):  # pragma: no cover - leaf
        raise NotImplementedError
