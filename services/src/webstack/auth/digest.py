# -*- test-case-name: tests.test_auth_units -*-
"""
Digest authentication that works behind the front and across replicas.

Twisted's L{DigestCredentialFactory} signs each challenge's C{opaque} with a
key made at random per process, bound to the client's address.  Behind a
proxy that address is the proxy's, and with two replicas a challenge from one
fails at the other.  Here the key comes from the settings (the same for
every replica) and the client's address is the one the front forwarded, when
the connection comes from a trusted proxy (L{TrustedProxies}).
"""

from __future__ import annotations

from twisted.web.guard import DigestCredentialFactory

from webstack.runtime.networks import TrustedProxies


class SharedDigestCredentialFactory(DigestCredentialFactory):
    def __init__(self, realm: bytes, key: bytes, proxies: TrustedProxies) -> None:
        super().__init__(b"md5", realm)
        self.digest.privateKey = key
        self._proxies = proxies

    def getChallenge(self, request):
        return self.digest.getChallenge(self._proxies.clientHost(request))

    def decode(self, response, request):
        return self.digest.decode(response, request.method, self._proxies.clientHost(request))
