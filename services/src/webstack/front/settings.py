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
from urllib.parse import urlsplit

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
    unhealthy_interval: float = setting(
        1.0,
        minimum=0.1,
        maximum=3600,
        help="probe a replica whose last probe failed every (s): back in rotation soon",
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
    prometheus_url: str = setting(
        "",
        help="Prometheus the dashboard asks for its recording rules, http://host:port"
        " ('': the front's own counters)",
    )
    prometheus_timeout: float = setting(
        0.5, minimum=0.05, maximum=0.9, help="seconds Prometheus has to answer each second"
    )
    prometheus_public_url: str = setting(
        "http://127.0.0.1:9090", help="Prometheus's UI as a browser reaches it ('': no link)"
    )
    locust_ui_url: str = setting(
        "http://127.0.0.1:8089", help="locust's web UI as a browser reaches it ('': no link)"
    )
    dashboard_points: int = setting(
        300, minimum=10, maximum=3600, help="seconds of history the dashboard keeps per route"
    )
    dashboard_window: float = setting(
        10.0, minimum=2, maximum=300, help="seconds over which its rates and p99 are taken"
    )
    routes: tuple[RouteSettings, ...] = ()
    # The key itself, read by loadSettings when a route is sticky; never shown.
    routeKey: bytes = dataclasses.field(default=b"", repr=False)

    def stickyRoutes(self) -> tuple[RouteSettings, ...]:
        return tuple(route for route in self.routes if route.sticky)


def splitHTTPURL(url: str) -> tuple[str, int, str]:
    """
    The host, port and path (without a trailing C{/}) of an C{http://} URL:
    what the front's own client needs to ask it something.

    @raise ValueError: saying what is wrong with it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError as e:
        raise ValueError(f"not a URL ({e})") from None
    if parts.scheme != "http":
        raise ValueError("expected http://host:port (the front's client speaks plain HTTP)")
    if not parts.hostname:
        raise ValueError("expected http://host:port: there is no host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("expected http://host:port[/path], with no query, fragment or user")
    if not parts.hostname.isascii() or not parts.path.isascii():
        raise ValueError("expected an ASCII host and path")
    return parts.hostname, port, parts.path.rstrip("/")


def _checkURLs(settings: Settings, source: str) -> None:
    """
    Refuse a malformed URL among the dashboard's settings now, rather than
    a failed fetch every second or a broken link on the landing page.
    """
    if settings.prometheus_url:
        try:
            splitHTTPURL(settings.prometheus_url)
        except ValueError as e:
            raise ConfigError(
                f"{source}: front.prometheus_url = {settings.prometheus_url!r} is invalid: {e}"
            ) from None
    for key in ("prometheus_public_url", "locust_ui_url"):
        value = getattr(settings, key)
        if not value:
            continue
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{source}: front.{key} = {value!r} is invalid: expected an http:// or"
                " https:// URL, or '' for no link"
            )


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
    _checkURLs(base, source)
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
