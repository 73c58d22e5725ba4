# -*- test-case-name: tests.test_async -*-
"""
A streamed response: C{request.write} called again and again over time, the
first promise of seed 001 ("this method can be called repeatedly"), stopping
as soon as the client is gone (the lesson of seed 000).

Served at C{/async/stream?chunks=N&interval=S}: the first chunk at once, the
others every S seconds, then C{finish}.  Through the front, chunks arrive as
they are written (the front streams, it does not buffer).
"""

from twisted.web.server import NOT_DONE_YET

from webstack.runtime.errors import errorBody

from .base import DelayedEndpoint
from .params import BadParameter, numberArgument


class StreamingResource(DelayedEndpoint):
    endpoint = "stream"

    def render_GET(self, request):
        limits = self.limits
        try:
            chunks = numberArgument(
                request,
                "chunks",
                default=limits.default_chunks,
                minimum=1,
                maximum=limits.max_chunks,
                integer=True,
            )
            interval = numberArgument(
                request,
                "interval",
                default=limits.default_interval,
                maximum=limits.max_interval,
            )
        except BadParameter as e:
            return errorBody(request, 400, str(e))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        _Stream(self.reactor, request, chunks, interval, self.stats.start(
            self.endpoint, getattr(request, "requestId", "-")
        ))
        return NOT_DONE_YET


class _Stream:
    """
    One streamed response in progress.
    """

    def __init__(self, reactor, request, chunks, interval, ticket):
        self._reactor = reactor
        self._request = request
        self._chunks = chunks
        self._interval = interval
        self._ticket = ticket
        self._sent = 0
        self._call = None
        request.notifyFinish().addErrback(self._responseFailed)
        self._writeNext()

    def _writeNext(self):
        self._call = None
        self._sent += 1
        self._request.write(b"chunk %d of %d\n" % (self._sent, self._chunks))
        if self._sent == self._chunks:
            self._request.finish()
            self._ticket.end("completed")
        else:
            self._call = self._reactor.callLater(self._interval, self._writeNext)

    def _responseFailed(self, reason):
        if self._call is not None and self._call.active():
            self._call.cancel()
            self._call = None
            self._ticket.end("cancelled")
