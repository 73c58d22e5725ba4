"""
The static service over loopback, on a root made for the test with files,
a subdirectory, a dotfile, an .rpy that must not run, and symbolic links
leading in and out.  The traversal corpus is sent raw, both to the service
itself and through the front: not one byte from outside the root.

Byte ranges (issue 9, attacks 3 and 12): a few thousand ranges cost the file
once, overlapping ones are merged, and a 206 carries the headers of its 200;
the range arithmetic is unit-tested at the end, in memory.
"""

import gzip
import http.client
import io
import os
import re

import pytest
from prometheus_client import CollectorRegistry

from webstack.localstack import LocalStack
from webstack.runtime import files

from .support import onePiece, rawGet, request

integration = pytest.mark.integration

LARGE = bytes(range(256)) * 2176  # 557,056 bytes, the size of config/static/large.txt

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    (base / "secret.txt").write_bytes(SECRET)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = base / "site"
    root.mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "a.txt").write_bytes(b"0123456789" * 100)
    (root / "style.css").write_text("body { color: red; }\n" * 50)
    (root / "large.txt").write_bytes(LARGE)
    (root / "empty.txt").write_bytes(b"")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    (root / ".hidden").write_bytes(SECRET)
    (root / "evil.rpy").write_text("resource = None  # never run\n")
    (root / "empty-dir").mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<h1>sub</h1>")
    os.symlink(base / "secret.txt", root / "link-out.txt")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / "a.txt", root / "link-in.txt")
    env = {"WEBSTACK_STATIC_ROOT": str(root)}
    with LocalStack(ephemeral=True, env=env, backends=("static",)) as stack:
        yield {
            "static": stack.services["static"].port,
            "front": stack.services["front"].port,
            "root": root,
            "stack": stack,
        }


TRAVERSAL = [
    b"/static/../secret.txt",
    b"/static/../../secret.txt",
    b"/static/%2e%2e/secret.txt",
    b"/static/%2E%2E/secret.txt",
    b"/static/%252e%252e/secret.txt",
    b"/static/..%2fsecret.txt",
    b"/static/%2e%2e%2fsecret.txt",
    b"/static/sub/..%2f..%2fsecret.txt",
    b"/static/..\\secret.txt",
    b"/static/..%5csecret.txt",
    b"/static/%5c..%5csecret.txt",
    b"/static/a.txt%00.html",
    b"/static/%00",
    b"/static/%2fetc%2fpasswd",
    b"/static//etc/passwd",
    b"/static/link-out.txt",
    b"/static/linkdir/secret.txt",
    b"/static/linkdir/",
    b"/static/.hidden",
    b"/static/%2ehidden",
]


@integration
@pytest.mark.parametrize("via", ["static", "front"])
@pytest.mark.parametrize("path", TRAVERSAL)
def test_notOneByteFromOutsideTheRoot(static, via, path):
    answer = rawGet(static[via], path)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 403, 404), answer[:200]
    assert SECRET not in answer
    assert b"root:" not in answer


@integration
def test_aSymlinkThatStaysInsideIsServed(static):
    response, body = request(static["front"], "GET", "/static/link-in.txt")
    assert response.status == 200 and body == b"0123456789" * 100


@integration
def test_scriptsAreServedAsFilesNeverRun(static):
    response, body = request(static["front"], "GET", "/static/evil.rpy")
    assert response.status == 200
    assert body == b"resource = None  # never run\n"


@integration
def test_indexAndSubdirectory(static):
    assert request(static["front"], "GET", "/static/")[1] == b"<h1>home</h1>"
    assert request(static["front"], "GET", "/static/sub/")[1] == b"<h1>sub</h1>"


@integration
def test_noDirectoryListingByDefault(static):
    response, body = request(static["front"], "GET", "/static/empty-dir/")
    assert response.status == 403


@integration
def test_conditionalRequestsGet304(static):
    response, body = request(static["front"], "GET", "/static/a.txt")
    etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
    assert etag.startswith('W/"')
    assert response.headers["Cache-Control"] == "public, max-age=300"
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"If-None-Match": etag})
    assert response.status == 304 and body == b""
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"If-Modified-Since": modified})
    assert response.status == 304 and body == b""


@integration
@pytest.mark.parametrize("via", ["front", "static"])
def test_a304ForAGzippedTypeHasNoBody(static, via):
    # Directly too: Twisted's gzip encoder writes its 10-byte trailer even
    # after a 304, which a keep-alive client reads as its next response.
    response, _ = request(static[via], "GET", "/static/style.css")
    answer = rawGet(
        static[via],
        b"/static/style.css",
        b"Accept-Encoding: gzip\r\nIf-None-Match: " + response.headers["ETag"].encode() + b"\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 304")
    assert body == b""


@integration
def test_byteRanges(static):
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"Range": "bytes=5-14"})
    assert response.status == 206
    assert body == b"5678901234"
    assert response.headers["Content-Range"] == "bytes 5-14/1000"
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"Range": "bytes=2000-3000"})
    assert response.status == 416


@integration
def test_textIsGzippedWhenAcceptedAndNothingElseIs(static):
    connection = http.client.HTTPConnection("127.0.0.1", static["front"], timeout=10)
    connection.request("GET", "/static/style.css", headers={"Accept-Encoding": "gzip"})
    response = connection.getresponse()
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    assert gzip.decompress(response.read()) == b"body { color: red; }\n" * 50
    connection.request("GET", "/static/image.png", headers={"Accept-Encoding": "gzip"})
    response = connection.getresponse()
    assert response.headers["Content-Encoding"] is None
    response.read()
    connection.request(
        "GET", "/static/style.css", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-3"}
    )
    response = connection.getresponse()
    assert response.headers["Content-Encoding"] is None and response.read() == b"body"
    connection.close()


@integration
def test_contentTypes(static):
    assert request(static["front"], "GET", "/static/style.css")[0].headers["Content-Type"] == "text/css"
    assert request(static["front"], "GET", "/static/image.png")[0].headers["Content-Type"] == "image/png"


@integration
def test_rpyScriptsRunOnlyUnderRpyAndCacheKeepsTheirState(static):
    """
    counter.rpy calls cache(), as the session-store seed says it must: the
    count goes up for one session.  (Its ICounter is defined once.)
    """
    connection = http.client.HTTPConnection("127.0.0.1", static["front"], timeout=10)
    connection.request("GET", "/rpy/counter.rpy")
    response = connection.getresponse()
    assert response.read() == b"Visit #1 for you!"
    cookie = response.headers["Set-Cookie"].split(";")[0]
    connection.request("GET", "/rpy/counter.rpy", headers={"Cookie": cookie})
    assert connection.getresponse().read() == b"Visit #2 for you!"
    connection.close()
    response, body = request(static["front"], "GET", "/rpy/")
    assert response.status == 200 and b"interruptible.rpy" in body


@integration
@pytest.mark.parametrize(
    "path, status",
    [(b"/static/nope.txt", 404), (b"/static/.hidden", 404), (b"/static/empty-dir/", 403), (b"/static/a.txt", 200)],
)
def test_answersWrittenInOnePieceGoWithTheirLength(static, path, status):
    head, body = onePiece(rawGet(static["static"], path))
    assert head.startswith(b"http/1.1 %d" % status)


# Byte ranges over loopback (issue 9, attacks 3 and 12).


def rangeGet(port, path, value, **headers):
    return request(port, "GET", path, headers={"Range": value, **headers})


def multipart(response, body):
    """
    The parts of a C{multipart/byteranges} answer: C{(Content-Range, bytes)}.
    """
    kind = response.headers["Content-Type"]
    assert kind.startswith("multipart/byteranges"), kind
    boundary = re.search(r'boundary="?([^";]+)"?', kind).group(1).encode()
    *chunks, last = body.split(b"\r\n--" + boundary)
    assert chunks[0] == b"" and last == b"--\r\n", body[:200]
    parts = []
    for chunk in chunks[1:]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        [contentRange] = re.findall(rb"(?im)^content-range: *(.*?)\r?$", head)
        parts.append((contentRange.decode(), data))
    return parts


def assertNothingLoggedAsAnError(static):
    for name in ("static", "front"):
        bad = [
            record
            for record in static["stack"].services[name].events()
            if "traceback" in record or record.get("level") in ("error", "critical")
        ]
        assert not bad, (name, bad[:3])


@integration
def test_threeThousandRangesGetTheWholeFileOnce(static):
    """
    Attack 3: C{bytes=0-,0-,...} three thousand times asked for 1.67 GB of
    a 557 KB file; it gets the file, once, with a 200.
    """
    value = "bytes=" + ",".join(["0-"] * 3000)
    connection = http.client.HTTPConnection("127.0.0.1", static["front"], timeout=10)
    try:
        connection.request("GET", "/static/large.txt", headers={"Range": value})
        response = connection.getresponse()
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(LARGE))
        assert response.headers["Content-Range"] is None
        assert response.read(len(LARGE) + 1) == LARGE
    finally:
        connection.close()
    assertNothingLoggedAsAnError(static)


@integration
def test_moreRangesThanTheLimitGetTheWholeFile(static):
    value = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17))
    response, body = rangeGet(static["front"], "/static/a.txt", value)
    assert response.status == 200 and body == b"0123456789" * 100


@integration
def test_asManyRangesAsTheLimitGetAMultipart(static):
    value = "bytes=" + ",".join(f"{i * 10 + 3}-{i * 10 + 3}" for i in range(16))
    response, body = rangeGet(static["front"], "/static/a.txt", value)
    assert response.status == 206
    assert multipart(response, body) == [(f"bytes {i * 10 + 3}-{i * 10 + 3}/1000", b"3") for i in range(16)]


@integration
@pytest.mark.parametrize(
    "value, merged",
    [
        ("bytes=5-14,10-24", "bytes 5-24/1000"),  # overlapping
        ("bytes=0-4,5-9", "bytes 0-9/1000"),  # adjacent
        ("bytes=100-199,120-130,0-99", "bytes 0-199/1000"),  # contained, then adjacent
    ],
)
def test_overlappingRangesAreMergedIntoOnePart(static, value, merged):
    response, body = rangeGet(static["front"], "/static/a.txt", value)
    assert response.status == 206
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Range"] == merged
    first, last = map(int, merged.split()[1].split("/")[0].split("-"))
    assert body == (b"0123456789" * 100)[first : last + 1]


@integration
def test_separateRangesAreAMultipartInTheOrderAsked(static):
    response, body = rangeGet(static["front"], "/static/a.txt", "bytes=500-509,0-4,20-29")
    assert response.status == 206
    assert multipart(response, body) == [
        ("bytes 500-509/1000", b"0123456789"),
        ("bytes 0-4/1000", b"01234"),
        ("bytes 20-29/1000", b"0123456789"),
    ]
    assert response.headers["Content-Length"] == str(len(body))


@integration
def test_aPartEndingJustShortOfABufferDoesNotStallTheAnswer(static):
    """
    Twisted's multipart producer asks the file for a negative number of
    bytes when a part ends less than one separator short of its 64 KiB
    buffer: a logged ValueError and an answer that never ends.  The first
    part's length is swept across that window (its exact place depends on
    the separator's length).
    """
    for length in range(65300, 65510, 10):
        value = f"bytes=0-{length - 1},200000-200099"
        response, body = rangeGet(static["static"], "/static/large.txt", value, timeout=5)
        assert response.status == 206
        assert [data for _, data in multipart(response, body)] == [LARGE[:length], LARGE[200000:200100]]
    assertNothingLoggedAsAnError(static)


@integration
@pytest.mark.parametrize("value", ["bytes=0-,0-", "bytes=0-599,400-999", "bytes=-600,0-500"])
def test_rangesAddingUpToMoreThanTheFileGetTheWholeFile(static, value):
    response, body = rangeGet(static["front"], "/static/a.txt", value)
    assert response.status == 200 and body == b"0123456789" * 100


@integration
@pytest.mark.parametrize("value", ["bytes=2000-3000", "bytes=1000-,5000-", "bytes=-0"])
def test_unsatisfiableRangesAre416WithTheSize(static, value):
    response, body = rangeGet(static["front"], "/static/a.txt", value)
    assert response.status == 416 and body == b""
    assert response.headers["Content-Range"] == "bytes */1000"


@integration
def test_aSuffixLongerThanTheFileIsTheWholeFile(static):
    # Twisted seeks 1000 bytes before the start of the file: an error.
    response, body = rangeGet(static["static"], "/static/a.txt", "bytes=-2000")
    assert response.status == 206 and body == b"0123456789" * 100
    assert response.headers["Content-Range"] == "bytes 0-999/1000"
    assertNothingLoggedAsAnError(static)


@integration
@pytest.mark.parametrize("value", ["bytes=1_0-20", "bytes=+5-9", "bytes=9-5", "bytes=-", "lines=0-5", "bytes 0-5"])
def test_aMalformedRangeIsIgnored(static, value):
    response, body = rangeGet(static["front"], "/static/a.txt", value)
    assert response.status == 200 and body == b"0123456789" * 100


@integration
def test_anEmptyFileAndASuffix(static):
    response, body = rangeGet(static["front"], "/static/empty.txt", "bytes=-5")
    assert response.status == 200 and body == b""
    response, body = rangeGet(static["front"], "/static/empty.txt", "bytes=0-")
    assert response.status == 416 and response.headers["Content-Range"] == "bytes */0"


@integration
@pytest.mark.parametrize("via", ["front", "static"])
@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_a206CarriesTheHeadersOfIts200(static, via, encoding):
    """
    Attack 12: RFC 9110, section 15.3.7: a 206 has the Cache-Control, ETag,
    Vary... its 200 would have had; without Vary, a cache could answer a
    client that takes no gzip with a gzipped 200 it stored.
    """
    whole, body = request(static[via], "GET", "/static/style.css", headers={"Accept-Encoding": encoding})
    assert whole.status == 200
    part, body = rangeGet(static[via], "/static/style.css", "bytes=0-3", **{"Accept-Encoding": encoding})
    assert part.status == 206 and body == b"body"
    assert "Accept-Encoding" in part.headers["Vary"]
    for name in ("Vary", "Cache-Control", "ETag", "Last-Modified", "Accept-Ranges"):
        assert part.headers[name] == whole.headers[name], name
    assert part.headers["Date"]
    # Two parts: the same.
    part, body = rangeGet(static[via], "/static/style.css", "bytes=0-3,10-13")
    assert part.status == 206
    for name in ("Vary", "Cache-Control", "ETag", "Last-Modified"):
        assert part.headers[name] == whole.headers[name], name


@integration
def test_a304ToARangeRequestCarriesVary(static):
    # RFC 9110, section 15.4.5: a 304 has the Vary its 200 would have had.
    whole, _ = request(static["front"], "GET", "/static/style.css")
    response, body = rangeGet(
        static["front"], "/static/style.css", "bytes=0-3", **{"If-None-Match": whole.headers["ETag"]}
    )
    assert response.status == 304 and body == b""
    assert response.headers["Vary"] == whole.headers["Vary"]
    assert response.headers["ETag"] == whole.headers["ETag"]
    assert response.headers["Cache-Control"] == whole.headers["Cache-Control"]


def rangeCount(port, outcome):
    _, body = request(port, "GET", "/metrics")
    match = re.search(rb'^file_range_requests_total\{outcome="%s"\} (\S+)$' % outcome.encode(), body, re.M)
    assert match, body[:500]
    return float(match.group(1))


@integration
def test_rangeAnswersAreCountedInTheMetrics(static):
    asks = {
        "too_many": "bytes=" + ",".join(["0-"] * 3000),
        "over_size": "bytes=0-,0-",
        "merged": "bytes=0-4,5-9",
        "partial": "bytes=0-4,10-14",
        "unsatisfiable": "bytes=5000-",
        "malformed": "bytes=x-y",
    }
    before = {outcome: rangeCount(static["static"], outcome) for outcome in asks}
    for value in asks.values():
        rangeGet(static["static"], "/static/a.txt", value)
    after = {outcome: rangeCount(static["static"], outcome) for outcome in asks}
    assert {outcome: after[outcome] - before[outcome] for outcome in asks} == dict.fromkeys(asks, 1.0)


def test_maxRangesIsASettingWithAClearError():
    from webstack.runtime.config import ConfigError
    from webstack.runtime.plugin import loadServiceSettings
    from webstack.static import app

    _, settings = loadServiceSettings(app, {}, {}, "stack.toml")
    assert settings.max_ranges == 16
    _, settings = loadServiceSettings(app, {}, {"WEBSTACK_STATIC_MAX_RANGES": "0"}, "stack.toml")
    assert settings.max_ranges == 0
    with pytest.raises(ConfigError, match=r"static\.max_ranges = -1 is invalid: out of range"):
        loadServiceSettings(app, {"static": {"max_ranges": -1}}, {}, "stack.toml")


# The range arithmetic, in memory.


@pytest.mark.parametrize(
    "value, specs",
    [
        (b"bytes=0-499", [(0, 499)]),
        (b"bytes=500-", [(500, None)]),
        (b"bytes=-500", [(None, 500)]),
        (b"BYTES=0-0, 2-3 ,,\t-1", [(0, 0), (2, 3), (None, 1)]),
    ],
)
def test_parseByteRanges(value, specs):
    assert files.parseByteRanges(value) == specs


@pytest.mark.parametrize(
    "value",
    [b"", b"bytes", b"bytes=", b"bytes=,", b"bytes=-", b"bytes=5-1", b"bytes=1_0-20", b"bytes=+5-9",
     b"bytes=0x10-", b"bytes=1 -2", b"bytes=\xd9\xa3-", b"items=0-1", b"bytes 0-1"],
)  # fmt: skip
def test_parseByteRangesRefusesWhatIsNotARange(value):
    with pytest.raises(ValueError):
        files.parseByteRanges(value)


@pytest.mark.parametrize(
    "first, last, size, part",
    [
        (0, 9, 100, (0, 10)),
        (90, 200, 100, (90, 10)),
        (99, None, 100, (99, 1)),
        (100, None, 100, None),
        (None, 10, 100, (90, 10)),
        (None, 1000, 100, (0, 100)),  # longer than the file: all of it
        (None, 0, 100, None),
        (None, 5, 0, None),
        (0, None, 0, None),
    ],
)
def test_resolveRange(first, last, size, part):
    assert files.resolveRange(first, last, size) == part


@pytest.mark.parametrize(
    "parts, merged",
    [
        ([(0, 5), (10, 5)], [(0, 5), (10, 5)]),
        ([(10, 5), (0, 5)], [(10, 5), (0, 5)]),  # the order asked for
        ([(0, 5), (5, 5)], [(0, 10)]),  # adjacent
        ([(0, 10), (2, 3)], [(0, 10)]),  # contained
        ([(50, 10), (20, 5), (0, 10), (8, 14)], [(50, 10), (0, 25)]),  # a group where its first was
        ([(3, 1)] * 5, [(3, 1)]),
    ],
)
def test_mergeRanges(parts, merged):
    assert files.mergeRanges(parts) == merged


@pytest.mark.parametrize(
    "value, size, maxRanges, outcome, parts",
    [
        (b"bytes=0-9", 100, 16, "partial", ((0, 10),)),
        (b"bytes=0-9,20-29", 100, 16, "partial", ((0, 10), (20, 10))),
        (b"bytes=0-9,5-14", 100, 16, "merged", ((0, 15),)),
        (b"bytes=0-9,500-", 100, 16, "partial", ((0, 10),)),  # the unsatisfiable one left out
        (b"bytes=" + b",".join([b"0-"] * 3000), 557056, 16, "too_many", ()),
        (b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(0, 32, 2)), 100, 16, "partial", tuple((i, 1) for i in range(0, 32, 2))),
        (b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(0, 34, 2)), 100, 16, "too_many", ()),
        (b"bytes=" + b",".join([b"junk"] * 17), 100, 16, "too_many", ()),  # counted before parsing
        (b"bytes=0-,0-", 100, 16, "over_size", ()),
        (b"bytes=0-59,40-99", 100, 16, "over_size", ()),
        (b"bytes=0-49,50-99", 100, 16, "merged", ((0, 100),)),
        (b"bytes=200-,300-400", 100, 16, "unsatisfiable", ()),
        (b"bytes=0-", 0, 16, "unsatisfiable", ()),
        (b"bytes=-5", 0, 16, "empty", ()),
        (b"bytes=0-9", 100, 0, "disabled", ()),
        (b"bytes=9-0", 100, 16, "malformed", ()),
    ],
)  # fmt: skip
def test_answerRange(value, size, maxRanges, outcome, parts):
    answer = files.answerRange(value, size, maxRanges)
    assert (answer.outcome, answer.parts) == (outcome, parts)
    assert answer.whole == (outcome in ("too_many", "over_size", "malformed", "empty", "disabled"))


def test_aRangePolicyCountsEachOutcome():
    registry = CollectorRegistry()
    policy = files.RangePolicy(2, registry)
    for value in (b"bytes=0-1", b"bytes=0-1,1-2", b"bytes=0-0,2-2,4-4", b"bytes=0-1", b"nonsense"):
        policy.answer(value, 10)
    count = lambda outcome: registry.get_sample_value("file_range_requests_total", {"outcome": outcome})  # noqa: E731
    assert [count(o) for o in ("partial", "merged", "too_many", "malformed", "over_size")] == [2, 1, 1, 1, 0]


def test_aRangePolicyRefusesANegativeLimit():
    with pytest.raises(ValueError, match="maxRanges must be 0 or more"):
        files.RangePolicy(-1)


def test_withoutARegistryNothingIsCounted():
    assert files.RangePolicy().answer(b"bytes=0-1", 10).parts == ((0, 2),)


class FakeRequest:
    """
    What a static producer writes to: the body, and how it ended.
    """

    def __init__(self) -> None:
        self.written = []
        self.finished = self.lost = False
        self.producer = None

    def write(self, data):
        self.written.append(data)

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def finish(self):
        self.finished = True

    def loseConnection(self):
        self.lost = True


def produce(producer, request, turns=100):
    producer.start()
    while request.producer is not None and turns:
        producer.resumeProducing()
        turns -= 1
    return b"".join(request.written)


@pytest.mark.parametrize("short", [1, 10, 50, 99])
def test_theMultipartProducerWritesAPartEndingJustShortOfItsBuffer(tmp_path, short):
    content = bytes(range(256)) * 1024
    (tmp_path / "file").write_bytes(content)
    separator = b"S" * 100
    size = files.MultipartProducer.bufferSize - len(separator) - short
    rangeInfo = [(separator, 0, size), (separator, 1000, 10), (b"END", 0, 0)]
    request = FakeRequest()
    opened = files.SafeFile(str(tmp_path / "file")).openForReading()  # as a file is served
    body = produce(files.MultipartProducer(request, opened, rangeInfo), request)
    assert body == separator + content[:size] + separator + content[1000:1010] + b"END"
    assert request.finished and not request.lost


def test_theMultipartProducerClosesWhenTheFileGotShorter():
    request = FakeRequest()
    producer = files.MultipartProducer(request, io.BytesIO(b"x" * 10), [(b"S", 0, 100), (b"END", 0, 0)])
    body = produce(producer, request)
    assert body == b"S" + b"x" * 10
    assert request.lost and not request.finished
