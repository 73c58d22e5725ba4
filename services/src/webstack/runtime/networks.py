# -*- test-case-name: tests.test_runtime,tests.test_auth_units -*-
"""
Trusted proxies: the peers whose forwarding headers a service believes.

Behind the front every request comes from the front's address, and what the
client's was, or whether it spoke HTTPS, is known only from the front's
C{X-Forwarded-For} and C{X-Forwarded-Proto}.  Any client can send those
headers too, so a service believes them only from a peer in a configured
list of networks (a setting such as C{auth.trusted_proxies}, default the
loopback addresses).  The auth service reads the client's address (its
Digest challenges and its lockouts), the services with sessions the scheme
(a C{Secure} cookie).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .config import parsedList

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network(text: str) -> Network:
    """
    The network C{text} names: an address (one host) or C{address/length};
    host bits are allowed (C{10.1.2.3/8} is C{10.0.0.0/8}).

    @raise ValueError: if C{text} is neither.
    """
    return ipaddress.ip_network(text, strict=False)


class TrustedProxies:
    """
    Which peers may tell a service about its client.
    """

    def __init__(self, networks: Iterable[str | Network] = ()) -> None:
        """
        @param networks: the trusted networks, or their text (L{network}).
        """
        self.networks = tuple(
            n if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else network(n)
            for n in networks
        )

    @classmethod
    def fromSetting(cls, text: str, key: str) -> TrustedProxies:
        """
        The proxies a comma-separated setting names
        (C{"127.0.0.1/32,::1/128"}; C{""}: none).

        @param key: the setting C{text} came from, for the error.
        @raise ConfigError: naming C{key} and the item that is not an
            address or network.
        """
        return cls(parsedList(text, key, network, "an address or network"))

    def trusts(self, request) -> bool:
        """
        Whether C{request} came straight from a trusted proxy.  A peer that
        is no IP address (a UNIX socket) is not one.
        """
        peer = getattr(request.getClientAddress(), "host", "")
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in n for n in self.networks)

    def clientHost(self, request) -> str:
        """
        The client's address: the last C{X-Forwarded-For} entry (the one the
        proxy added) when a trusted proxy sent C{request}, else the peer's.
        """
        peer = getattr(request.getClientAddress(), "host", "")
        if self.trusts(request):
            forwarded = request.getHeader(b"x-forwarded-for")
            if forwarded:
                return forwarded.split(b",")[-1].strip().decode("ascii", "replace")
        return peer

    def forwardedHTTPS(self, request) -> bool:
        """
        Whether a trusted proxy says C{request}'s client reached it over
        HTTPS (C{X-Forwarded-Proto: https}).
        """
        proto = request.getHeader(b"x-forwarded-proto")
        if proto is None or proto.strip().lower() != b"https":
            return False
        return self.trusts(request)
