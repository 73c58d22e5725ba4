"""
L{webstack.wsgi.length.withContentLength} in memory: what the server's
C{start_response} is given.
"""

import sys

import pytest

from webstack.wsgi.length import withContentLength


class Server:
    """
    The server side: what start_response was given, what was written.
    """

    def __init__(self):
        self.started = []
        self.written = []

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None and self.written:
            raise exc_info[1].with_traceback(exc_info[2])
        self.started.append((status, headers))
        return self.written.append


def serve(application):
    server = Server()
    body = withContentLength(application)({}, server.start_response)
    for piece in body:
        server.written.append(piece)
    return server


def test_aListGetsTheLengthOfAllItsPieces():
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, ", b"world!"]

    server = serve(application)
    assert server.started == [("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])]
    assert server.written == [b"Hello, ", b"world!"]


@pytest.mark.parametrize(
    "status, headers",
    [
        ("200 OK", [("content-length", "2")]),
        ("200 OK", [("Transfer-Encoding", "chunked")]),
        ("204 No Content", []),
        ("304 Not Modified", []),
    ],
)
def test_noLengthIsAddedWhereItIsSaidOrMustNotBe(status, headers):
    def application(environ, start_response):
        start_response(status, headers)
        return [b"ok"] if status.startswith("200") else []

    assert serve(application).started == [(status, headers)]


def test_aGeneratorOrAWriteGoesAsBefore():
    def generated(environ, start_response):
        # A generator: start_response runs when the server iterates it.
        start_response("200 OK", [])
        yield b"a"
        yield b"b"

    def imperative(environ, start_response):
        write = start_response("200 OK", [])
        write(b"first")
        return [b"second"]

    assert serve(generated).started == [("200 OK", [])]
    server = serve(imperative)
    assert server.started == [("200 OK", [])]
    assert server.written == [b"first", b"second"]


def test_anErrorPageReplacesWhatWasHeld():
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    assert serve(application).started == [
        ("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    ]
