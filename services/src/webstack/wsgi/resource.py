# -*- test-case-name: tests.test_wsgi -*-
"""
L{WSGIResource} with its calls bounded and skipped when nobody waits for
them (L{webstack.wsgi.calls.BoundedCalls}).

Twisted's resource hands every request straight to the thread pool.  This
one hands it to L{BoundedCalls} instead, which answers two questions
Twisted's never asks:

  - is there room?  If not, the client gets C{503} with C{Retry-After: 1}
    at once (counted in C{wsgi_rejected_total}), not a place at the end of
    an unbounded queue;
  - when a thread is free for it, is its client still there?  If not, the
    application is not called at all.

The application can also learn that its client has left while it runs:
C{environ["webstack.client_gone"]} is a L{threading.Event} set when the
connection is lost, so a long call can stop early (the demo's slow page
waits on it instead of sleeping).  A client that leaves is still logged by
the site as an aborted request (status 499), with no traceback.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter
from twisted.web.server import NOT_DONE_YET
from twisted.web.wsgi import WSGIResource, _WSGIResponse

from webstack.runtime.errors import errorBody

from .calls import BoundedCalls

CLIENT_GONE_KEY = "webstack.client_gone"
"""
The environ key of the event set when the request's client has gone.
"""

RETRY_AFTER = b"1"


class Rejections:
    """
    C{wsgi_rejected_total}: requests refused with 503 before any call was
    made, by reason (C{queue_full}, C{stopping}).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._counter = Counter(
            "wsgi_rejected",
            "WSGI requests answered 503 at once, without calling the"
            " application: every thread busy and wsgi.queue_max calls waiting"
            " (queue_full), or the service stopping (stopping).",
            ["reason"],
            registry=registry,
        )
        self.queueFull = self._counter.labels("queue_full").inc
        self.stopping = self._counter.labels("stopping").inc


class BoundedWSGIResource(WSGIResource):
    """
    A L{WSGIResource} whose calls go through C{calls}.
    """

    def __init__(
        self, reactor, calls: BoundedCalls, application, rejections: Rejections
    ) -> None:
        super().__init__(reactor, calls.pool, application)
        self._calls = calls
        self._rejections = rejections

    def render(self, request):
        calls = self._calls
        if not calls.hasRoom():
            if calls.closed:
                self._rejections.stopping()
                detail = "The WSGI service is stopping."
            else:
                self._rejections.queueFull()
                detail = (
                    f"The WSGI service is busy: all {calls.pool.max}"
                    f" threads are taken and {calls.queueMax} requests are"
                    " waiting. Try again shortly."
                )
            request.setHeader(b"retry-after", RETRY_AFTER)
            return errorBody(request, 503, detail, retry_after=int(RETRY_AFTER))
        gone = threading.Event()
        request.notifyFinish().addErrback(lambda _: gone.set())
        # What WSGIResource.render makes (Twisted's private class), but run
        # through the calls rather than handed to the pool by its start().
        response = _WSGIResponse(
            self._reactor, self._threadpool, self._application, request
        )
        response.environ[CLIENT_GONE_KEY] = gone
        calls.run(response.run, lambda: not gone.is_set())
        return NOT_DONE_YET
