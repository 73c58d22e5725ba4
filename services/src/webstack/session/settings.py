# -*- test-case-name: tests.test_session -*-
"""
The session service's settings: the C{[session]} table of C{stack.toml}.
"""

from __future__ import annotations

from dataclasses import dataclass

from webstack.runtime.config import setting
from webstack.runtime.networks import TrustedProxies

SECTION = "session"


@dataclass(frozen=True)
class Settings:
    timeout: float = setting(
        60.0, minimum=1, maximum=86400, help="a session expires this long after its last visit (s)"
    )
    max_sessions: int = setting(
        10000,
        minimum=1,
        maximum=10_000_000,
        help="sessions held at once; when full, a new one is refused (503, Retry-After)",
    )
    trusted_proxies: str = setting(
        "127.0.0.1/32,::1/128", help="peers whose X-Forwarded-Proto is believed"
    )

    def trustedProxies(self) -> TrustedProxies:
        """
        C{trusted_proxies}, parsed.

        @raise ConfigError: naming the setting and its first bad item.
        """
        return TrustedProxies.fromSetting(self.trusted_proxies, f"{SECTION}.trusted_proxies")

    def __post_init__(self) -> None:
        self.trustedProxies()
