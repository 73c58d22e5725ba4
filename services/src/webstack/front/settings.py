# -*- test-case-name: tests.test_front_units,tests.test_front_affinity -*-
"""
The front's settings: the C{[front]} table, and one C{[front.routes.NAME]}
table per route.

A sticky route needs the key that signs the front's routing cookie
(L{webstack.front.affinity}).  It is read here, with the rest of the
settings, so that a front without one stops before it starts, with exit
status 2 and one line naming the setting, rather than starting with a key of
its own that no other worker or replica shares (which would break every
session that crosses from one to another, silently).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.python.filepath import FilePath, InsecurePath

from webstack.runtime.config import (
    ConfigError,
    Layer,
    buildSettings,
    envName,
    parsedList,
    setting,
    table,
)
from webstack.runtime.settings import ownSettings, runtimeSettings

from .affinity import validCookieName, validCookiePath

SECTION = "front"
SUBTABLES = ("routes",)

# Where the Makefile puts the routing cookie's key (relative to config/).
DEFAULT_KEY_FILE = "front/route.key"

# Shorter keys are too easy to guess, and with the key any cookie is forged.
MIN_ROUTE_KEY_BYTES = 16


def _secret(field: Any) -> Any:
    """
    A setting left out of the settings' C{repr}, which may end up in a log.
    """
    field.repr = False
    return field


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
    sticky: bool = setting(
        False,
        help="keep each client on one replica, named by the front's routing cookie",
    )
    service: str = setting(
        "", help="the stack.toml table of the service behind it ('': the route's name)"
    )
    max_body_bytes: int = setting(
        0,
        minimum=0,
        maximum=1 << 30,
        help="largest request body forwarded (0: the service's own max_body_bytes)",
    )
    name: str = ""

    def targets(self) -> list[tuple[str, int]]:
        """
        The C{(host, port)} pairs of C{upstream}.

        @raise ConfigError: if one is malformed.
        """
        return list(
            parsedList(self.upstream, f"front.routes.{self.name}.upstream", hostPort, "host:port")
        )


def hostPort(item: str) -> tuple[str, int]:
    """
    C{host:port} (C{[v6-address]:port} too) as C{(host, port)}.

    @raise ValueError: if C{item} is not that, or the port is not 1 to 65535.
    """
    host, sep, port = item.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(item)
    return host, int(port)


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
    route_cookie: str = setting(
        "WEBSTACK_ROUTE", help="name of the routing cookie of sticky routes"
    )
    route_key: str = _secret(
        setting("", help="key signing the routing cookie (every front worker and replica)")
    )
    route_key_file: str = setting(
        DEFAULT_KEY_FILE, help="... or a file holding it (relative: to stack.toml's directory)"
    )
    routes: tuple[RouteSettings, ...] = ()
    # The key itself, read by loadSettings when a route is sticky; never shown.
    routeKey: bytes = dataclasses.field(default=b"", repr=False)

    def stickyRoutes(self) -> tuple[RouteSettings, ...]:
        return tuple(route for route in self.routes if route.sticky)


def readRouteKey(settings: Settings, configDir: FilePath, source: str) -> bytes:
    """
    The routing cookie's key: C{route_key} if set, else the stripped content
    of C{route_key_file} (relative to C{configDir}, the directory of
    C{stack.toml}, like every path in it; the Makefile makes that file once,
    and compose mounts it into every front container).

    @raise ConfigError: if there is no key, or too short a one, naming the
        settings that give it.
    """
    sticky = ", ".join(f"front.routes.{r.name}" for r in settings.stickyRoutes())
    variable = envName((SECTION, "route_key"))
    missing = (
        f"sticky routes ({sticky}) need the key every front worker and replica"
        f" shares: `make run` and `make up` make config/{DEFAULT_KEY_FILE}, or set {variable}"
    )
    if settings.route_key:
        key = settings.route_key.encode("utf-8")
        origin = f"front.route_key (or {variable})"
    else:
        relative = settings.route_key_file
        if not relative:
            raise ConfigError(
                f"{source}: front.route_key and front.route_key_file are both empty: {missing}"
            )
        try:
            path = (
                FilePath(relative)
                if relative.startswith("/")
                else configDir.preauthChild(relative)
            )
        except InsecurePath:
            raise ConfigError(
                f"{source}: front.route_key_file = {relative!r} is invalid:"
                " it leaves the config directory"
            ) from None
        origin = f"front.route_key_file ({path.path})"
        try:
            key = path.getContent().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"{source}: front.route_key is empty and {origin} does not exist: {missing}"
            ) from None
        except OSError as e:
            raise ConfigError(f"{source}: {origin} cannot be read: {e.strerror}") from None
        if not key:
            raise ConfigError(f"{source}: front.route_key is empty and {origin} is empty: {missing}")
    if len(key) < MIN_ROUTE_KEY_BYTES:
        raise ConfigError(
            f"{source}: {origin} is too short: the routing cookie's key needs at"
            f" least {MIN_ROUTE_KEY_BYTES} bytes"
        )
    return key


def loadSettings(
    document: Mapping[str, Any],
    environ: Mapping[str, str],
    source: str,
    configDir: FilePath | None = None,
) -> Settings:
    """
    Read C{[front]} and its routes, and the routing cookie's key if a route
    is sticky.

    @param source: the path of C{stack.toml}, for messages.
    @param configDir: where relative paths start; by default the directory
        of C{source}, as for L{AppContext.configPath
        <webstack.runtime.plugin.AppContext.configPath>}.

    @raise ConfigError: naming the first bad key.
    """
    front = table(document, SECTION)
    base = ownSettings(Settings, document, SECTION, environ, source, subtables=SUBTABLES)
    if not base.route_cookie.isascii() or not validCookieName(base.route_cookie.encode()):
        raise ConfigError(
            f"{source}: front.route_cookie = {base.route_cookie!r} is invalid:"
            " a cookie name is letters, digits and !#$%&'*+-.^_`|~"
        )
    routes = []
    prefixes: dict[str, str] = {}
    for name in table(document, SECTION, "routes"):
        path = (SECTION, "routes", name)
        _refuseStickyCookie(table(document, *path), environ, path, source)
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
        if route.sticky and not (
            route.prefix.isascii() and validCookiePath(route.prefix.encode())
        ):
            raise ConfigError(
                f"{source}: front.routes.{name}.prefix = {route.prefix!r} is invalid"
                " for a sticky route: the routing cookie's Path allows no spaces,"
                " ; or characters outside ASCII"
            )
        prefixes[route.prefix] = name
        route.targets()
        if not route.max_body_bytes:
            route = dataclasses.replace(
                route, max_body_bytes=_serviceBodyLimit(document, environ, route, source)
            )
        routes.append(route)
    if "routes" in front and routes == []:
        raise ConfigError(f"{source}: front.routes has no route")
    settings = dataclasses.replace(base, routes=tuple(routes))
    if settings.stickyRoutes():
        if configDir is None:
            configDir = FilePath(os.path.abspath(source)).parent()
        key = readRouteKey(settings, configDir, source)
        settings = dataclasses.replace(settings, routeKey=key)
    return settings


def _serviceBodyLimit(
    document: Mapping[str, Any],
    environ: Mapping[str, str],
    route: RouteSettings,
    source: str,
) -> int:
    """
    The C{max_body_bytes} of the service behind C{route}, as that service
    reads it (C{[runtime]}, then its own table, then the environment): the
    front refuses a larger body itself with 413, rather than reading up to
    its own limit only for the service to refuse it.
    """
    service = route.service or route.name
    runtime = runtimeSettings(
        document, service, environ, source, otherKeys=table(document, service)
    )
    return runtime.max_body_bytes


def _refuseStickyCookie(
    values: Mapping[str, Any],
    environ: Mapping[str, str],
    path: tuple[str, ...],
    source: str,
) -> None:
    """
    C{sticky_cookie} (stickiness on the backend's own cookie, through a table
    in one front process's memory) is gone; say what replaces it rather than
    only that the key is unknown, and refuse its environment variable too,
    which would otherwise be ignored without a word.
    """
    dotted = ".".join(path + ("sticky_cookie",))
    variable = envName(path + ("sticky_cookie",))
    if "sticky_cookie" in values:
        where = f"{source}: {dotted}"
    elif variable in environ:
        where = f"environment: {variable}"
    else:
        return
    raise ConfigError(
        f"{where} is no longer a setting: use sticky = true (the front now"
        f" issues its own signed routing cookie, front.route_cookie)"
    )
