# -*- test-case-name: webstack.tests.test_front_units -*-
"""
The front's settings: the C{[front]} table, and one C{[front.routes.NAME]}
table per route.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webstack.runtime.config import ConfigError, Layer, buildSettings, setting, table
from webstack.runtime.service import RuntimeSettings

SECTION = "front"
SUBTABLES = ("routes",)


@dataclass(frozen=True)
class RouteSettings:
    """
    One route: requests whose path starts with C{prefix} go to C{upstream}.
    """

    prefix: str = setting("/", help="path prefix, starting and ending with /")
    upstream: str = setting(
        "", help="comma-separated host:port list; empty: not served yet"
    )
    timeout: float = setting(
        30.0, minimum=0.1, maximum=3600, help="seconds to the upstream's response head"
    )
    sticky_cookie: str = setting(
        "", help="keep a client whose request has this cookie on the replica that set it"
    )
    name: str = ""

    def targets(self) -> list[tuple[str, int]]:
        """
        The C{(host, port)} pairs of C{upstream}.

        @raise ConfigError: if one is malformed.
        """
        result = []
        for item in filter(None, (part.strip() for part in self.upstream.split(","))):
            host, sep, port = item.rpartition(":")
            host = host.strip("[]")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"front.routes.{self.name}.upstream = {self.upstream!r} is invalid:"
                    f" {item!r} is not host:port"
                )
            result.append((host, int(port)))
        return result


@dataclass(frozen=True)
class Settings:
    connect_timeout: float = setting(
        3.0, minimum=0.05, maximum=120, help="seconds to connect to a replica"
    )
    pool_max_per_host: int = setting(
        128, minimum=0, maximum=100000, help="idle keep-alive connections per replica"
    )
    pool_idle_timeout: float = setting(
        30.0, minimum=1, maximum=3600, help="drop an idle pooled connection after (s)"
    )
    eject_seconds: float = setting(
        5.0, minimum=0, maximum=3600, help="leave out a refusing replica this long"
    )
    resolve_interval: float = setting(
        5.0, minimum=0.5, maximum=3600, help="re-resolve upstream names every (s)"
    )
    health_interval: float = setting(
        5.0, minimum=0.5, maximum=3600, help="probe each replica's /readyz every (s)"
    )
    trust_forwarded: bool = setting(
        False,
        help="keep the client's X-Forwarded-* (only behind another trusted proxy)",
    )
    routes: tuple[RouteSettings, ...] = ()


def loadSettings(
    document: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> Settings:
    """
    Read C{[front]} and its routes.

    @raise ConfigError: naming the first bad key.
    """
    runtimeKeys = {f.name for f in dataclasses.fields(RuntimeSettings)}
    front = table(document, SECTION)
    base = buildSettings(
        Settings,
        [Layer((SECTION,), front, source)],
        environ,
        foreignKeys=runtimeKeys | set(SUBTABLES),
    )
    routes = []
    prefixes: dict[str, str] = {}
    for name in table(document, SECTION, "routes"):
        path = (SECTION, "routes", name)
        route = buildSettings(
            RouteSettings, [Layer(path, table(document, *path), source)], environ
        )
        route = dataclasses.replace(route, name=name)
        if not (route.prefix.startswith("/") and route.prefix.endswith("/")):
            raise ConfigError(
                f"{source}: front.routes.{name}.prefix = {route.prefix!r} is invalid:"
                " it must start and end with /"
            )
        if route.prefix in ("/", "/-/"):
            raise ConfigError(
                f"{source}: front.routes.{name}.prefix = {route.prefix!r} is invalid:"
                " / and /-/ belong to the front itself"
            )
        if route.prefix in prefixes:
            raise ConfigError(
                f"{source}: front.routes.{name}.prefix = {route.prefix!r} is invalid:"
                f" front.routes.{prefixes[route.prefix]} has it already"
            )
        prefixes[route.prefix] = name
        route.targets()
        routes.append(route)
    if "routes" in front and routes == []:
        raise ConfigError(f"{source}: front.routes has no route")
    return dataclasses.replace(base, routes=tuple(routes))
