"""
The static service over loopback, on a root made for the test with files,
a subdirectory, a dotfile, an .rpy that must not run, and symbolic links
leading in and out.  The traversal corpus is sent raw, both to the service
itself and through the front: not one byte from outside the root.
"""

import gzip
import http.client
import os

import pytest

from webstack.localstack import LocalStack

from .support import onePiece, rawGet, request

pytestmark = pytest.mark.integration

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


@pytest.mark.parametrize("via", ["static", "front"])
@pytest.mark.parametrize("path", TRAVERSAL)
def test_notOneByteFromOutsideTheRoot(static, via, path):
    answer = rawGet(static[via], path)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 403, 404), answer[:200]
    assert SECRET not in answer
    assert b"root:" not in answer


def test_aSymlinkThatStaysInsideIsServed(static):
    response, body = request(static["front"], "GET", "/static/link-in.txt")
    assert response.status == 200 and body == b"0123456789" * 100


def test_scriptsAreServedAsFilesNeverRun(static):
    response, body = request(static["front"], "GET", "/static/evil.rpy")
    assert response.status == 200
    assert body == b"resource = None  # never run\n"


def test_indexAndSubdirectory(static):
    assert request(static["front"], "GET", "/static/")[1] == b"<h1>home</h1>"
    assert request(static["front"], "GET", "/static/sub/")[1] == b"<h1>sub</h1>"


def test_noDirectoryListingByDefault(static):
    response, body = request(static["front"], "GET", "/static/empty-dir/")
    assert response.status == 403


def test_conditionalRequestsGet304(static):
    response, body = request(static["front"], "GET", "/static/a.txt")
    etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
    assert etag.startswith('W/"')
    assert response.headers["Cache-Control"] == "public, max-age=300"
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"If-None-Match": etag})
    assert response.status == 304 and body == b""
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"If-Modified-Since": modified})
    assert response.status == 304 and body == b""


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


def test_byteRanges(static):
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"Range": "bytes=5-14"})
    assert response.status == 206
    assert body == b"5678901234"
    assert response.headers["Content-Range"] == "bytes 5-14/1000"
    response, body = request(static["front"], "GET", "/static/a.txt", headers={"Range": "bytes=2000-3000"})
    assert response.status == 416


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


def test_contentTypes(static):
    assert request(static["front"], "GET", "/static/style.css")[0].headers["Content-Type"] == "text/css"
    assert request(static["front"], "GET", "/static/image.png")[0].headers["Content-Type"] == "image/png"


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


@pytest.mark.parametrize(
    "path, status",
    [(b"/static/nope.txt", 404), (b"/static/.hidden", 404), (b"/static/empty-dir/", 403), (b"/static/a.txt", 200)],
)
def test_answersWrittenInOnePieceGoWithTheirLength(static, path, status):
    head, body = onePiece(rawGet(static["static"], path))
    assert head.startswith(b"http/1.1 %d" % status)
