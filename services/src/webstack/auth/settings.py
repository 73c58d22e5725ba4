# -*- test-case-name: tests.test_auth_units,tests.test_auth -*-
"""
The auth service's settings: the C{[auth]} table of C{stack.toml}.  Read by
the service and by C{webstack.auth.users}, which edits the password files
they name.
"""

from __future__ import annotations

from dataclasses import dataclass

from webstack.runtime.config import setting
from webstack.runtime.networks import TrustedProxies

SECTION = "auth"


@dataclass(frozen=True)
class Settings:
    realm: str = setting("webstack", help="the HTTP authentication realm")
    homes: str = setting("auth/home", help="<user>/public_html lives here")
    htpasswd: str = setting("auth/htpasswd", help="bcrypt hashes, for Basic")
    htdigest: str = setting("auth/htdigest", help="HA1 hashes, for Digest")
    digest_key: str = setting("", help="key signing Digest challenges (all replicas)")
    digest_key_file: str = setting("auth/digest.key", help="... or a file holding it")
    trusted_proxies: str = setting(
        "127.0.0.1/32,::1/128", help="peers whose X-Forwarded-For is believed"
    )
    max_failures: int = setting(5, minimum=1, maximum=1000)
    failure_window: float = setting(60.0, minimum=1, maximum=86400)
    lockout_seconds: float = setting(30.0, minimum=1, maximum=86400)
    check_threads: int = setting(
        2, minimum=1, maximum=64, help="threads checking bcrypt passwords (about one per CPU)"
    )
    check_queue: int = setting(
        8, minimum=0, maximum=10000, help="password checks that may wait for a thread; more get 503"
    )
    cache_seconds: float = setting(
        60.0, minimum=0, maximum=3600, help="a Basic login that passed is not checked again this long (0: off)"
    )
    cache_entries: int = setting(
        1024, minimum=1, maximum=1_000_000, help="most Basic logins remembered (least recently used go first)"
    )

    def trustedProxies(self) -> TrustedProxies:
        """
        C{trusted_proxies}, parsed.

        @raise ConfigError: naming the setting and its first bad item.
        """
        return TrustedProxies.fromSetting(self.trusted_proxies, f"{SECTION}.trusted_proxies")

    def __post_init__(self) -> None:
        self.trustedProxies()
