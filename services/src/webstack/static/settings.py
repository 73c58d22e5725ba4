# -*- test-case-name: tests.test_static,tests.test_rpy_session -*-
"""
The static service's settings: the C{[static]} table of C{stack.toml}.
"""

from __future__ import annotations

from dataclasses import dataclass

from webstack.runtime.config import setting
from webstack.runtime.files import DEFAULT_MAX_RANGES
from webstack.runtime.networks import TrustedProxies

SECTION = "static"


@dataclass(frozen=True)
class Settings:
    root: str = setting("static", help="the site, relative to stack.toml's directory")
    listing: bool = setting(False, help="list directories that have no index.html")
    cache_control: str = setting(
        "public, max-age=300", help="Cache-Control of every file ('' for none)"
    )
    rpy_root: str = setting("rpy", help="the .rpy scripts served at /rpy/ ('' for none)")
    max_ranges: int = setting(
        DEFAULT_MAX_RANGES, minimum=0, maximum=1000,
        help="byte ranges a request may ask for (more: the whole file; 0: ranges off)",
    )
    rpy_session_timeout: float = setting(
        60.0, minimum=1, maximum=86400, help="an .rpy session expires this long after its last visit (s)"
    )
    rpy_max_sessions: int = setting(
        1000,
        minimum=1,
        maximum=10_000_000,
        help=".rpy sessions held at once; when full, a new one is refused (503, Retry-After)",
    )
    rpy_trusted_proxies: str = setting(
        "127.0.0.1/32,::1/128", help="peers whose X-Forwarded-Proto is believed (.rpy cookies)"
    )

    def rpyTrustedProxies(self) -> TrustedProxies:
        """
        C{rpy_trusted_proxies}, parsed.

        @raise ConfigError: naming the setting and its first bad item.
        """
        return TrustedProxies.fromSetting(
            self.rpy_trusted_proxies, f"{SECTION}.rpy_trusted_proxies"
        )

    def __post_init__(self) -> None:
        self.rpyTrustedProxies()
