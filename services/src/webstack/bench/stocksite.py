"""
Stock Twisted's L{Site} serving the same delayed answer as
C{/async/delay?seconds=0}: the baseline for what the runtime (limits,
metrics, request ids, JSON access lines) costs per request.  Run as

    python -m webstack.bench.stocksite [--log]

It listens on a free loopback port and prints C{listening PORT}.  Plain, it
runs as L{stockproxy} does, with no log observer: the Site still makes its
access line, which nobody writes out.  With C{--log} it logs as
C{twistd -n web} would, Twisted's text observer writing that line to
standard output (which the bench drains, as it drains the service's JSON
lines): the same work as the service, one written line per request.
"""

import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

BODY = b"<html><body>Sorry to keep you waiting.</body></html>"


class DelayedAnswer(Resource):
    """
    Every path: C{callLater(0)}, then the seeds' 52-byte body, as the async
    service's C{delay} endpoint does with C{seconds=0}.
    """

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(BODY))
        gone = []
        request.notifyFinish().addErrback(gone.append)
        reactor.callLater(0, self._answer, request, gone)
        return NOT_DONE_YET

    def _answer(self, request, gone):
        # The service's endpoint also watches notifyFinish: a client that
        # left gets nothing written (writing would raise).
        if not gone:
            request.write(BODY)
            request.finish()


def main() -> None:
    port = reactor.listenTCP(0, Site(DelayedAnswer()), interface="127.0.0.1")
    print(f"listening {port.getHost().port}", flush=True)
    if "--log" in sys.argv[1:]:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    reactor.run()


if __name__ == "__main__":
    main()
