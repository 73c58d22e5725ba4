# -*- test-case-name: tests.test_auth_units -*-
"""
Digest authentication that works behind the front and across replicas.

Twisted's L{DigestCredentialFactory} signs each challenge's C{opaque} with a
key made at random per process, bound to the client's address.  Behind a
proxy that address is the proxy's, and with two replicas a challenge from one
fails at the other.  Here the key comes from the settings (the same for
every replica) and the client's address is the one the front forwarded, when
the connection comes from a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from twisted.web.guard import DigestCredentialFactory


class TrustedProxies:
    """
    Which peers may tell us the client's address (C{X-Forwarded-For}).
    """

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def clientHost(self, request) -> str:
        peer = getattr(request.getClientAddress(), "host", "")
        try:
            trusted = any(ipaddress.ip_address(peer) in n for n in self._networks)
        except ValueError:
            trusted = False
        if trusted:
            forwarded = request.getHeader(b"x-forwarded-for")
            if forwarded:
                return forwarded.split(b",")[-1].strip().decode("ascii", "replace")
        return peer


class SharedDigestCredentialFactory(DigestCredentialFactory):
    def __init__(self, realm: bytes, key: bytes, proxies: TrustedProxies) -> None:
        super().__init__(b"md5", realm)
        self.digest.privateKey = key
        self._proxies = proxies

    def getChallenge(self, request):
        return self.digest.getChallenge(self._proxies.clientHost(request))

    def decode(self, response, request):
        return self.digest.decode(response, request.method, self._proxies.clientHost(request))
