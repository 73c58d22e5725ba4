# -*- test-case-name: tests.test_static -*-
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
    gets C{304} (C{Last-Modified}/C{If-Modified-Since} are Twisted's own);
  - byte ranges (C{206}/C{416}) that cost no more than the file: see
    L{RangePolicy};
  - gzip for text types, when the client accepts it and asked for no range,
    and C{Vary: Accept-Encoding} on every answer for such a type (C{200},
    C{206}, C{304}, C{416}), since a cache must not hand a gzipped body to a
    client that did not ask for one;
  - C{Cache-Control} as configured.

Byte ranges
===========

Twisted's L{static.File} answers every range a client lists, in the order
listed, overlapping or not: C{Range: bytes=0-,0-,...} three thousand times on
a 557 KB file is a 1.67 GB multipart answer, streamed out from one small
request.  Here, as with nginx's C{max_ranges} and Apache's C{MaxRanges}, a
C{Range} header is answered with a C{206} only while that costs at most the
file once:

  - more than C{maxRanges} ranges (16 by default), or ranges that add up to
    more bytes than the file has, get a C{200} and the whole file, once;
  - overlapping and adjacent ranges are merged, in the order the first of
    each group was asked for (RFC 9110, section 14.2); what merges into one
    range is a plain single-part C{206};
  - a malformed header is ignored (a C{200}, as RFC 9110 allows), and so is
    a suffix on an empty file;
  - no satisfiable range is a C{416} with C{Content-Range: bytes */size};
  - a suffix longer than the file is the whole file (Twisted's seeks before
    the start of the file, an error);
  - a multipart body is written by L{MultipartProducer}, which does not
    fail as Twisted's does when a part ends just short of a full buffer.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from twisted.python.filepath import FilePath
from twisted.web import http, static
from twisted.web.http import NO_BODY_CODES
from twisted.web.iweb import _IRequestEncoder
from twisted.web.resource import EncodingResourceWrapper
from twisted.web.server import GzipEncoderFactory
from zope.interface import implementer

from .errors import ErrorPage
from .metrics import adder

_TEXT_TYPES = ("text/", "application/json", "application/javascript", "image/svg+xml")


class TextGzipEncoderFactory(GzipEncoderFactory):
    """
    Gzip, but only a whole text response: a range of a compressed body would
    be a range of something the client never asked for, and images are
    compressed already.
    """

    compressLevel = 6

    def encoderForRequest(self, request):
        kind, _ = mimetypes.guess_type(request.path.decode("utf-8", "replace"))
        if kind is None or not kind.startswith(_TEXT_TYPES):
            return None
        # Whatever the answer (a 206 or 304 too: RFC 9110, sections 15.3.7
        # and 15.4.5), it is one the client's Accept-Encoding chose.
        request.responseHeaders.addRawHeader(b"vary", b"Accept-Encoding")
        if request.requestHeaders.hasHeader(b"range"):
            return None
        encoder = super().encoderForRequest(request)
        return None if encoder is None else _BodilessSafe(encoder, request)


DEFAULT_MAX_RANGES = 16
"""
How many ranges one request may ask for by default: a resumed download or
a media player asks for one, a document viewer for a few.  (nginx's
C{max_ranges} has no limit unless set; Apache's C{MaxRanges}, added after
CVE-2011-3192, the same attack, is 200.)
"""

WHOLE_OUTCOMES = ("too_many", "over_size", "malformed", "empty", "disabled")
"""
The outcomes of L{answerRange} that are answered with the whole file.
"""

OUTCOMES = ("partial", "merged", "unsatisfiable", *WHOLE_OUTCOMES)

_RANGE_SPEC = re.compile(rb"([0-9]*)-([0-9]*)")
_OWS = b" \t"


@dataclass(frozen=True)
class RangeAnswer:
    """
    How a file answers a C{Range} header.

    @ivar outcome: one of L{OUTCOMES}: C{partial} (the ranges as asked, less
        any that are unsatisfiable), C{merged} (some were merged), C{unsatisfiable}
        (a C{416}), or why the whole file is sent instead (L{WHOLE_OUTCOMES}).
    @ivar parts: C{(offset, length)} of each part to send, in order; empty
        unless the outcome is C{partial} or C{merged}.
    """

    outcome: str
    parts: tuple[tuple[int, int], ...] = ()

    @property
    def whole(self) -> bool:
        return self.outcome in WHOLE_OUTCOMES


def parseByteRanges(value: bytes) -> list[tuple[int | None, int | None]]:
    """
    The range-specs of a C{Range} header (RFC 9110, section 14.1.1) as
    C{(first, last)} pairs, C{first} L{None} for a suffix (C{bytes=-500}).

    Stricter than Twisted's parser: digits only (no C{+5}, no C{1_000}).

    @raise ValueError: the unit is not C{bytes}, or a range-spec is not
        C{first-}, C{first-last} with C{first <= last}, or C{-suffix}.
    """
    unit, equals, rangeSet = value.partition(b"=")
    if not equals or unit.strip(_OWS).lower() != b"bytes":
        raise ValueError("not a bytes range")
    specs = []
    for spec in _rangeSpecs(rangeSet):
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None or match.group(0) == b"-":
            raise ValueError("malformed range")
        first = int(match.group(1)) if match.group(1) else None
        last = int(match.group(2)) if match.group(2) else None
        if first is not None and last is not None and first > last:
            raise ValueError("range ends before it starts")
        specs.append((first, last))
    if not specs:
        raise ValueError("no range")
    return specs


def _rangeSpecs(rangeSet: bytes) -> list[bytes]:
    """
    The non-empty elements of a comma-separated list (RFC 9110, section 5.6.1).
    """
    return [s for s in (e.strip(_OWS) for e in rangeSet.split(b",")) if s]


def _moreThan(limit: int, rangeSet: bytes) -> bool:
    """
    Whether a comma-separated list has more than C{limit} non-empty elements.
    """
    count = 0
    for element in rangeSet.split(b","):
        if element.strip(_OWS):
            count += 1
            if count > limit:
                return True
    return False


def resolveRange(first: int | None, last: int | None, size: int) -> tuple[int, int] | None:
    """
    The C{(offset, length)} that C{first-last} selects in C{size} bytes, or
    L{None} if it selects none (RFC 9110, section 14.1.2).
    """
    if first is None:
        # A suffix longer than the representation is all of it.
        start = max(size - last, 0) if last else size
        end = size
    else:
        start = first
        end = size if last is None else min(last + 1, size)
    if start >= size:
        return None
    return start, end - start


def mergeRanges(parts: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """
    C{(offset, length)} parts with the overlapping and adjacent ones merged,
    each merged part where the first of its group was (RFC 9110, section
    14.2: the order asked for, less what was coalesced).
    """
    order = sorted(range(len(parts)), key=lambda i: parts[i][0])
    groups: list[list[int]] = []  # [start, end, first index]
    for i in order:
        start, length = parts[i]
        if groups and start <= groups[-1][1]:
            group = groups[-1]
            group[1] = max(group[1], start + length)
            group[2] = min(group[2], i)
        else:
            groups.append([start, start + length, i])
    groups.sort(key=lambda group: group[2])
    return [(start, end - start) for start, end, _ in groups]


def answerRange(value: bytes, size: int, maxRanges: int = DEFAULT_MAX_RANGES) -> RangeAnswer:
    """
    How a file of C{size} bytes answers C{Range: value}, at most
    C{maxRanges} ranges and at most C{size} bytes of them (see the module
    docstring).
    """
    if maxRanges <= 0:
        return RangeAnswer("disabled")
    # Counted before anything is parsed, up to one more than allowed.
    if _moreThan(maxRanges, value.partition(b"=")[2]):
        return RangeAnswer("too_many")
    try:
        specs = parseByteRanges(value)
    except ValueError:
        return RangeAnswer("malformed")
    parts = [p for p in (resolveRange(first, last, size) for first, last in specs) if p]
    if not parts:
        if size == 0 and any(first is None and last for first, last in specs):
            # Satisfiable (RFC 9110, section 14.1.1), but no 206 can say
            # "none of nothing": the whole, empty, file.
            return RangeAnswer("empty")
        return RangeAnswer("unsatisfiable")
    if sum(length for _, length in parts) > size:
        return RangeAnswer("over_size")
    merged = mergeRanges(parts)
    return RangeAnswer("merged" if len(merged) < len(parts) else "partial", tuple(merged))


class RangePolicy:
    """
    How the files of one service answer byte ranges: at most C{maxRanges}
    of them (0: none, every answer is the whole file), each request's
    outcome counted in C{file_range_requests_total} of C{registry} if one
    is given.
    """

    def __init__(
        self,
        maxRanges: int = DEFAULT_MAX_RANGES,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if maxRanges < 0:
            raise ValueError(f"maxRanges must be 0 or more, not {maxRanges}")
        self.maxRanges = maxRanges
        self._count = {}
        if registry is not None:
            counter = Counter(
                "file_range_requests_total",
                "Requests for files with a Range header, by outcome: partial,"
                " merged (overlapping or adjacent ranges merged),"
                " unsatisfiable (416); or answered with the whole file:"
                " too_many (more than max_ranges), over_size (more bytes than"
                " the file), malformed, empty (a suffix of an empty file), disabled"
                " (max_ranges = 0).",
                ["outcome"],
                registry=registry,
            )
            self._count = {outcome: adder(counter.labels(outcome)) for outcome in OUTCOMES}

    def answer(self, value: bytes, size: int) -> RangeAnswer:
        """
        L{answerRange} under this policy, counted.
        """
        answer = answerRange(value, size, self.maxRanges)
        count = self._count.get(answer.outcome)
        if count is not None:
            count(1)
        return answer


_UNCOUNTED = RangePolicy()


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
    @ivar ranges: the L{RangePolicy} byte ranges are answered under.
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
        ranges: RangePolicy | None = None,
    ) -> None:
        super().__init__(path)
        self.processors = {}
        self.root = root if root is not None else FilePath(path).realpath()
        self.listing = listing
        self.cacheControl = cacheControl
        self.gzip = gzip
        self.ranges = ranges if ranges is not None else _UNCOUNTED

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
            ranges=self.ranges,
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

    def makeProducer(self, request, fileForReading):
        """
        Set the status and content headers of a C{GET}, and return what
        writes its body: Twisted's producers, given only the parts
        L{RangePolicy.answer} allows (Twisted's own would send any number).
        """
        value = request.getHeader(b"range")
        if value is None:
            return super().makeProducer(request, fileForReading)
        size = self.getFileSize()
        answer = self.ranges.answer(value, size)
        if answer.whole:
            if answer.outcome == "disabled":
                request.setHeader(b"accept-ranges", b"none")
            self._setContentHeaders(request, size)
            request.setResponseCode(http.OK)
            return static.NoRangeStaticProducer(request, fileForReading)
        if not answer.parts:
            request.setResponseCode(http.REQUESTED_RANGE_NOT_SATISFIABLE)
            request.setHeader(b"content-range", b"bytes */%d" % (size,))
            request.setHeader(b"content-length", b"0")
            return static.SingleRangeStaticProducer(request, fileForReading, 0, 0)
        if len(answer.parts) == 1:
            [(offset, length)] = answer.parts
            request.setResponseCode(http.PARTIAL_CONTENT)
            request.setHeader(b"content-range", self._contentRange(offset, length))
            self._setContentHeaders(request, length)
            return static.SingleRangeStaticProducer(request, fileForReading, offset, length)
        # Twisted's multipart framing, given inclusive (first, last) pairs.
        rangeInfo = self._doMultipleRangeRequest(
            request, [(offset, offset + length - 1) for offset, length in answer.parts]
        )
        return MultipartProducer(request, fileForReading, rangeInfo)


class MultipartProducer(static.MultipleRangeStaticProducer):
    """
    Twisted's producer of a C{multipart/byteranges} body, without its
    failure: when a part ends less than one separator short of a full
    buffer, Twisted's adds the next separator and then asks the file for a
    negative number of bytes (C{ValueError}, logged, and the answer stalls
    for good).  Here the buffer is written as it is instead.
    """

    def resumeProducing(self):
        if not self.request:
            return
        data = []
        dataLength = 0
        done = False
        while dataLength < self.bufferSize:
            if self.partBoundary:
                dataLength += len(self.partBoundary)
                data.append(self.partBoundary)
                self.partBoundary = None
            wanted = min(self.bufferSize - dataLength, self._partSize - self._partBytesWritten)
            if wanted > 0:
                chunk = self.fileObject.read(wanted)
                self._partBytesWritten += len(chunk)
                dataLength += len(chunk)
                data.append(chunk)
            if self._partBytesWritten == self._partSize:
                try:
                    self._nextRange()
                except StopIteration:
                    done = True
                    break
            elif wanted > 0 and not chunk:
                # The file is shorter than when the Content-Length was
                # set: that answer cannot be finished (and Twisted's would
                # loop here for ever).
                self.request.write(b"".join(data))
                self.request.unregisterProducer()
                self.request.loseConnection()
                self.stopProducing()
                return
        self.request.write(b"".join(data))
        if done:
            self.request.unregisterProducer()
            self.request.finish()
            self.stopProducing()
