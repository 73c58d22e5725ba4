# -*- test-case-name: tests.test_wsgi -*-
"""
C{Content-Length} for WSGI bodies returned whole.

An application that returns its body as a list (the seed's hello, most small
applications) has given all of it by the time it returns, but says nothing
of its length; Twisted's L{WSGIResource} then sends it chunked.  PEP 3333
lets a server add the length itself ("if the iterable returned by the
application has a len() of 1, then the server can automatically determine
Content-Length"), and this does, for any list or tuple, so the
applications stay as they are.
"""

from __future__ import annotations

_NO_BODY = ("1", "204", "304")


def withContentLength(application):
    """
    C{application}, answering with the C{Content-Length} of a body it returns
    as a list or tuple and did not measure itself.

    Its status and headers are held until it returns (a server sends them
    only with the first piece of the body anyway); a body it writes with the
    C{write} callable, or yields from a generator, goes as before.
    """

    def lengthened(environ, start_response):
        response = _HeldResponse(start_response)
        body = application(environ, response.startResponse)
        response.returned = True
        extra = []
        if isinstance(body, (list, tuple)) and response.wantsLength():
            extra.append(("Content-Length", str(sum(len(piece) for piece in body))))
        response.passOn(extra)
        return body

    return lengthened


class _HeldResponse:
    """
    The C{start_response} an application gets: it keeps the status and
    headers until the application returns, unless the application writes
    first.
    """

    def __init__(self, start_response) -> None:
        self._start = start_response
        self._held: tuple[str, list] | None = None
        self._write = None
        self.returned = False

    def startResponse(self, status, headers, exc_info=None):
        if self._write is not None or self.returned:
            # Passed on already, or started only once the body is iterated:
            # the server's own rules (exc_info re-raised once headers are
            # sent) apply.
            self._write = self._start(status, headers, exc_info)
            return self._write
        # Nothing is sent yet, so a second call (with exc_info, after an
        # error) simply replaces what was held, as PEP 3333 allows.
        self._held = (status, list(headers))
        return self.write

    def write(self, data):
        self.passOn([])
        return self._write(data)

    def wantsLength(self) -> bool:
        if self._held is None or self._write is not None:
            return False
        status, headers = self._held
        if status.startswith(_NO_BODY):
            return False
        return not any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in headers
        )

    def passOn(self, extra: list) -> None:
        if self._write is None and self._held is not None:
            status, headers = self._held
            self._write = self._start(status, headers + extra)
