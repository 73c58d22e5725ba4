# -*- test-case-name: webstack.tests.test_files -*-
"""
Static files that cannot leave their root: L{SafeFile}, the one way webstack
serves files (the static site, and each user's C{public_html} in auth).

It is L{twisted.web.static.File} with its risky defaults turned off and a few
things a demanding client expects turned on:

  - plain files only: no processors (C{.rpy}, C{.epy}, C{.cgi} run nothing),
    and C{index.html} is the only index name (not C{index.rpy});
  - nothing outside the root: a segment that is C{..}, holds a C{/} or
    backslash or NUL, or starts with a dot is not found; and a symbolic link
    is followed only if where it leads is still inside the root;
  - no directory listing unless asked for (403 otherwise);
  - a weak C{ETag} from size and modification time, so C{If-None-Match}
    gets C{304} (C{Last-Modified}/C{If-Modified-Since} and byte ranges,
    C{206}/C{416}, are Twisted's own);
  - gzip for text types, when the client accepts it and asked for no range;
  - C{Cache-Control} as configured.
"""

from __future__ import annotations

import mimetypes

from twisted.python.filepath import FilePath
from twisted.web import http, static
from twisted.web.http import NO_BODY_CODES
from twisted.web.iweb import _IRequestEncoder
from twisted.web.resource import EncodingResourceWrapper
from twisted.web.server import GzipEncoderFactory

from .errors import ErrorPage
from zope.interface import implementer

_TEXT_TYPES = ("text/", "application/json", "application/javascript", "image/svg+xml")


class TextGzipEncoderFactory(GzipEncoderFactory):
    """
    Gzip, but only a whole text response: a range of a compressed body would
    be a range of something the client never asked for, and images are
    compressed already.
    """

    compressLevel = 6

    def encoderForRequest(self, request):
        if request.requestHeaders.hasHeader(b"range"):
            return None
        kind, _ = mimetypes.guess_type(request.path.decode("utf-8", "replace"))
        if kind is None or not kind.startswith(_TEXT_TYPES):
            return None
        request.responseHeaders.addRawHeader(b"vary", b"Accept-Encoding")
        encoder = super().encoderForRequest(request)
        return None if encoder is None else _BodilessSafe(encoder, request)


@implementer(_IRequestEncoder)
class _BodilessSafe:
    """
    A gzip encoder that writes no gzip trailer after a response that has no
    body (a C{304}, a C{HEAD}): Twisted's would, and those ten bytes on a
    keep-alive connection are read by the client as the start of the next
    response.
    """

    def __init__(self, encoder, request) -> None:
        self._encoder = encoder
        self._request = request

    def encode(self, data: bytes) -> bytes:
        return self._encoder.encode(data)

    def finish(self) -> bytes:
        trailer = self._encoder.finish()
        request = self._request
        if request.code in NO_BODY_CODES or request.method == b"HEAD":
            return b""
        return trailer


class SafeFile(static.File):
    """
    A L{static.File} confined to C{root} (see the module docstring).

    @ivar root: the directory nothing may be served from outside of.
    @ivar listing: whether directories without an index are listed.
    @ivar cacheControl: the C{Cache-Control} value for files, or C{b""}.
    """

    indexNames = ["index.html"]
    processors: dict = {}
    childNotFound = ErrorPage(404, "No such file.")
    forbidden = ErrorPage(403, "This directory has no index.")

    def __init__(
        self,
        path: str,
        *,
        root: FilePath | None = None,
        listing: bool = False,
        cacheControl: bytes = b"",
        gzip: bool = True,
    ) -> None:
        super().__init__(path)
        self.processors = {}
        self.root = root if root is not None else FilePath(path).realpath()
        self.listing = listing
        self.cacheControl = cacheControl
        self.gzip = gzip

    def getChild(self, path, request):
        segment = path.decode("utf-8", "replace") if isinstance(path, bytes) else path
        if segment.startswith(".") or any(c in segment for c in ("/", "\\", "\x00")):
            return self.childNotFound
        child = super().getChild(path, request)
        if isinstance(child, SafeFile):
            if not self._inside(child):
                return self.childNotFound
            if self.gzip and child.isfile():
                return EncodingResourceWrapper(child, [TextGzipEncoderFactory()])
        return child

    def _inside(self, child: FilePath) -> bool:
        try:
            real = child.realpath()
        except OSError:
            return False
        return real == self.root or self.root in real.parents()

    def createSimilarFile(self, path):
        similar = self.__class__(
            path,
            root=self.root,
            listing=self.listing,
            cacheControl=self.cacheControl,
            gzip=self.gzip,
        )
        similar.indexNames = self.indexNames[:]
        similar.processors = self.processors
        similar.childNotFound = self.childNotFound
        return similar

    def directoryListing(self):
        if self.listing:
            return super().directoryListing()
        return self.forbidden

    def render_GET(self, request):
        self.restat(False)
        if self.isfile():
            if not self._inside(self):
                return self.childNotFound.render(request)
            if self.cacheControl:
                request.setHeader(b"cache-control", self.cacheControl)
            tag = b'W/"%x-%x"' % (self.getsize(), int(self.getModificationTime() * 1e6))
            if request.setETag(tag) is http.CACHED:
                return b""
        return super().render_GET(request)

    render_HEAD = render_GET
