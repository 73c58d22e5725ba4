# -*- test-case-name: tests.test_wsgi,tests.test_config -*-
"""
The WSGI service's settings: the C{[wsgi]} table of C{stack.toml}.
"""

from __future__ import annotations

from dataclasses import dataclass

from webstack.runtime.config import ConfigError, setting

SECTION = "wsgi"


@dataclass(frozen=True)
class Settings:
    threads_min: int = setting(2, minimum=0, maximum=256, help="threads kept ready")
    threads_max: int = setting(10, minimum=1, maximum=256, help="most WSGI calls at once")
    queue_max: int = setting(
        20,
        minimum=0,
        maximum=10000,
        help="WSGI calls that may wait for a thread; beyond, 503 with Retry-After at once",
    )
    slow_max_seconds: float = setting(30.0, minimum=0, maximum=600)

    def __post_init__(self) -> None:
        if self.threads_min > self.threads_max:
            raise ConfigError(
                f"wsgi.threads_min = {self.threads_min} is invalid:"
                f" larger than wsgi.threads_max = {self.threads_max}"
            )
