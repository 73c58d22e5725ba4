# -*- test-case-name: tests.test_async -*-
"""
The async service's settings: the C{[async]} table of C{stack.toml}.
"""

from __future__ import annotations

from dataclasses import dataclass

from webstack.runtime.config import ConfigError, setting

SECTION = "async"


@dataclass(frozen=True)
class Settings:
    default_seconds: float = setting(
        5.0, minimum=0, maximum=3600, help="delay when ?seconds= is absent"
    )
    max_seconds: float = setting(
        60.0, minimum=0, maximum=3600, help="largest ?seconds= accepted"
    )
    default_chunks: int = setting(10, minimum=1, maximum=100000)
    max_chunks: int = setting(1000, minimum=1, maximum=100000)
    default_interval: float = setting(1.0, minimum=0, maximum=600)
    max_interval: float = setting(10.0, minimum=0, maximum=600)

    def __post_init__(self) -> None:
        for default, maximum in (
            ("default_seconds", "max_seconds"),
            ("default_chunks", "max_chunks"),
            ("default_interval", "max_interval"),
        ):
            if getattr(self, default) > getattr(self, maximum):
                raise ConfigError(
                    f"{SECTION}.{default} = {getattr(self, default)!r} is invalid:"
                    f" larger than {SECTION}.{maximum} = {getattr(self, maximum)!r}"
                )
