# -*- test-case-name: tests.test_config,tests.test_runtime -*-
"""
The settings every service has (L{RuntimeSettings}), and reading a service's
settings from C{stack.toml}: the runtime's from C{[runtime]} and then the
service's own table, the service's own from its table alone.

A service's table holds both kinds side by side (C{[async]} has C{listen}
and C{max_seconds}), so each reading allows the other's keys
(L{RUNTIME_KEYS}, or the service's fields) and refuses any other unknown one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .config import Layer, buildSettings, setting, table

T = TypeVar("T")


@dataclass(frozen=True)
class RuntimeSettings:
    """
    The settings every service has.  They are read from C{[runtime]}, then
    from the service's own table, so one service can differ from the rest.
    """

    listen: str = setting(
        "tcp:8080:interface=127.0.0.1",
        help="endpoint description to listen on (twisted strports syntax)",
    )
    backlog: int = setting(1024, minimum=1, maximum=65535, help="listen backlog")
    idle_timeout: float = setting(
        60.0, minimum=1, maximum=3600, help="close a connection idle this long (s)"
    )
    head_timeout: float = setting(
        10.0, minimum=0.1, maximum=300, help="a request head must arrive within (s)"
    )
    body_timeout: float = setting(
        60.0, minimum=0.1, maximum=3600, help="a request body must arrive within (s)"
    )
    max_header_bytes: int = setting(
        16384, minimum=1024, maximum=1 << 20, help="largest request head (bytes)"
    )
    max_headers: int = setting(
        100, minimum=1, maximum=1000, help="most header fields in a request"
    )
    max_body_bytes: int = setting(
        1 << 20, minimum=0, maximum=1 << 30, help="largest request body (bytes)"
    )
    write_timeout: float = setting(
        60.0,
        minimum=0,
        maximum=3600,
        help="abort a response the client reads nothing of this long (s; 0: never)",
    )
    max_connections: int = setting(
        10000,
        minimum=1,
        maximum=1000000,
        help="client connections open at once; more are closed as accepted",
    )
    drain_timeout: float = setting(
        10.0, minimum=0, maximum=600, help="on SIGTERM, wait this long for requests (s)"
    )
    workers: int = setting(
        1,
        minimum=0,
        maximum=256,
        help="processes accepting on the one listening socket (0: one per CPU;"
        " see webstack.runtime.workers)",
    )
    gc_threshold: int = setting(
        10000,
        minimum=0,
        maximum=10_000_000,
        help="net allocations between young garbage collections (CPython: 700;"
        " the middle generation every 50 young collections, the old every 100"
        " middle ones); 0: CPython's own (see webstack.runtime.collector)",
    )
    admin_listen: str = setting(
        "",
        help="the fault switch's listener, on loopback only (e.g."
        " tcp:9000:interface=127.0.0.1; worker N on the port + N - 1);"
        ' "": off (see webstack.runtime.faults)',
    )


RUNTIME_KEYS = frozenset(f.name for f in dataclasses.fields(RuntimeSettings))
"""
The keys of L{RuntimeSettings}: allowed in every service's table.
"""


def fieldNames(cls: type) -> frozenset[str]:
    """
    The keys of the settings dataclass C{cls}.
    """
    return frozenset(f.name for f in dataclasses.fields(cls))


def runtimeSettings(
    document: Mapping[str, Any],
    section: str,
    environ: Mapping[str, str],
    source: str,
    *,
    otherKeys: Iterable[str],
) -> RuntimeSettings:
    """
    The runtime settings of the service whose table is C{section}: the
    defaults, then C{[runtime]}, then C{[section]}, then the environment
    (C{WEBSTACK_RUNTIME_*}, then C{WEBSTACK_<SECTION>_*}).

    @param otherKeys: the other keys C{[section]} may hold (the service's
        own settings and sub-tables).
    @raise ConfigError: naming the first bad key.
    """
    return buildSettings(
        RuntimeSettings,
        [
            Layer(("runtime",), table(document, "runtime"), source),
            Layer((section,), table(document, section), source),
        ],
        environ,
        foreignKeys=otherKeys,
    )


def ownSettings(
    cls: type[T],
    document: Mapping[str, Any],
    section: str,
    environ: Mapping[str, str],
    source: str,
    *,
    subtables: Iterable[str] = (),
) -> T:
    """
    A service's own settings, the dataclass C{cls}: the defaults, then
    C{[section]}, then the environment (C{WEBSTACK_<SECTION>_*}).  The
    table's runtime keys and C{subtables} are left to their readers.

    @raise ConfigError: naming the first bad key.
    """
    return buildSettings(
        cls,
        [Layer((section,), table(document, section), source)],
        environ,
        foreignKeys=RUNTIME_KEYS | set(subtables),
    )
