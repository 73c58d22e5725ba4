"""
Stock Twisted's L{ReverseProxyResource} in front of one upstream: the peer
the front is measured against (C{make bench}).  Run as

    python -m webstack.bench.stockproxy UPSTREAM_PORT

It listens on a free loopback port, prints C{listening PORT}, and runs with
Twisted's defaults (listen backlog 50), as people deploy it.
"""

import sys
import warnings

from twisted.internet import reactor
from twisted.web.server import Site

with warnings.catch_warnings():
    # twisted.web.proxy uses the deprecated HTTPClient (twisted#12172).
    warnings.simplefilter("ignore", DeprecationWarning)
    from twisted.web.proxy import ReverseProxyResource


def main() -> None:
    upstreamPort = int(sys.argv[1])
    site = Site(ReverseProxyResource("127.0.0.1", upstreamPort, b""))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(f"listening {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
