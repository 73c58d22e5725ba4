# -*- test-case-name: tests.test_faults -*-
"""
The fault switch: tell a running service to add latency to requests, fail a
share of them with C{500}, or reset a share of their connections, per route
prefix and per process, like the feature flags of the OpenTelemetry Demo.

Made of:

  - L{FaultRule} and L{FaultState}: what is switched on, checked, with errors
    an operator can read (C{LATENCY=fast}, C{ERRORS=150%});
  - L{FaultResource}: the resource put in front of a service's root while
    any rule is set; it waits with C{reactor.callLater}, answers C{500} with
    the stack's own error page, or aborts the connection;
  - L{FaultSwitch}: one service's state, its metrics, and the swapping of
    its site's root: with no rule set the site serves its root as it always
    did, so the switch costs a request nothing at all until it is used;
  - L{AdminService}: a tiny site of its own on C{runtime.admin_listen}
    (off by default; C{tcp:9000:interface=127.0.0.1} in each container),
    answering C{GET}, C{PUT}/C{POST} and C{DELETE} on C{/faults}.  It is
    bound to loopback: only whoever can run a command inside the container
    (C{docker exec}, what C{make fault} does) reaches it, so it needs no
    token;
  - a command line, run inside the container, that talks to it:

      python -m webstack.runtime.faults set --service async \\
          [--route /async/] [--latency 200ms] [--errors 5%] [--reset 1%]
      python -m webstack.runtime.faults clear --service async [--route R]
      python -m webstack.runtime.faults show --service async
      python -m webstack.runtime.faults check [--latency ...] ...

Health, readiness and metrics (C{/healthz}, C{/readyz}, C{/metrics} and the
front's C{/-/}) are never faulted: the orchestrator keeps its view of the
service, and C{/metrics} keeps showing the switch's state
(C{fault_latency_seconds}, C{fault_error_ratio}, C{fault_reset_ratio} by
route, C{faults_injected_total} by kind).

A service run as several workers (the front) has one state per worker;
worker N's admin listener is on the configured port plus N - 1, and the
command line sets every one of them.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import random as _random
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource as _resource
from twisted.web import server
from twisted.web.resource import IResource, Resource, getChildForRequest
from zope.interface import implementer

from .config import ConfigError
from .errors import renderError
from .metrics import adder
from .site import SERVED_BY

MAX_LATENCY = 300.0
"""
The longest latency a rule may add (s): longer than any timeout of the stack.
"""
MAX_RULES = 32
"""
Rules one process holds at once (a route prefix each, or C{*}).
"""
MAX_BODY = 4096
"""
The largest body the admin listener reads.
"""
EVERY_ROUTE = "*"
NEVER_FAULTED = ("/healthz", "/readyz", "/metrics", "/-/")
"""
Path prefixes no rule applies to: health checks, readiness and scrapes.
"""
_NEVER_FAULTED = tuple(p.encode("ascii") for p in NEVER_FAULTED)
KINDS = ("latency", "error", "reset")
FAULT_HEADER = b"x-fault"
"""
Says, on a response a rule touched, what it did (C{latency}, C{error}).
"""

log = Logger()


class FaultError(ValueError):
    """
    A fault setting that cannot be used.  C{str()} is one line for an
    operator, naming the setting, the value and what is allowed.
    """


_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"\A\s*{_NUMBER}\s*(ms|s)?\s*\Z")
_SHARE = re.compile(rf"\A\s*{_NUMBER}\s*(%)?\s*\Z")


def parseLatency(value: str | float | int) -> float:
    """
    Seconds from C{"200ms"}, C{"1.5s"}, C{"0.2"} (seconds) or a number.

    @raise FaultError: for anything else, or more than L{MAX_LATENCY}.
    """
    if isinstance(value, bool):
        raise FaultError(f"latency {value!r} is not a duration: give e.g. 200ms or 1.5s")
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise FaultError(f"latency {value!r} is not a duration: give e.g. 200ms or 1.5s")
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise FaultError(
                f"latency {str(value)!r} is not a duration: give milliseconds or"
                " seconds, e.g. 200ms, 1.5s or 0.2"
            )
        seconds = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
    if seconds > MAX_LATENCY:
        raise FaultError(f"latency {value!r} is too long: at most {MAX_LATENCY:g}s")
    return seconds


def parseShare(name: str, value: str | float | int) -> float:
    """
    A share of requests, 0 to 1, from C{"5%"}, C{"0.05"} or a number.

    @param name: the setting (C{errors}, C{reset}), for the error.
    @raise FaultError: for anything else, or outside 0% to 100%.
    """
    allowed = "a share is 0% to 100% (e.g. 5% or 0.05)"
    if isinstance(value, bool):
        raise FaultError(f"{name} {value!r} is not a share: {allowed}")
    if isinstance(value, (int, float)):
        share = float(value)
        if not math.isfinite(share):
            raise FaultError(f"{name} {value!r} is not a share: {allowed}")
    else:
        match = _SHARE.match(str(value))
        if match is None:
            raise FaultError(f"{name} {str(value)!r} is not a share: {allowed}")
        share = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
    if not 0.0 <= share <= 1.0:
        raise FaultError(f"{name} {value!r} is out of range: {allowed}")
    return share


def checkRoute(route: str) -> str:
    """
    C{route} if it can name a rule: C{*}, or a path prefix starting with
    C{/} (printable ASCII, no space, at most 256 characters) that is not one
    of L{NEVER_FAULTED}.

    @raise FaultError: otherwise.
    """
    if route == EVERY_ROUTE:
        return route
    if (
        not isinstance(route, str)
        or not route.startswith("/")
        or len(route) > 256
        or not all("!" <= c <= "~" for c in route)
    ):
        raise FaultError(
            f"route {route!r} is not a path prefix: give * (every route) or a"
            " prefix such as /async/"
        )
    if route.startswith(NEVER_FAULTED):
        raise FaultError(
            f"route {route!r} is never faulted: {', '.join(NEVER_FAULTED)} stay"
            " up so that health checks and /metrics keep working"
        )
    return route


@dataclass(frozen=True)
class FaultRule:
    """
    What happens to requests under one route prefix (or C{*}: every route
    without a rule of its own).

    @ivar latency: seconds every such request waits before anything else.
    @ivar errors: the share of them answered C{500}.
    @ivar reset: the share of them whose connection is aborted (a TCP reset),
        unanswered.
    """

    route: str = EVERY_ROUTE
    latency: float = 0.0
    errors: float = 0.0
    reset: float = 0.0

    def __post_init__(self) -> None:
        checkRoute(self.route)
        parseLatency(self.latency)
        parseShare("errors", self.errors)
        parseShare("reset", self.reset)
        if self.errors + self.reset > 1.0 + 1e-9:
            raise FaultError(
                f"errors {formatShare(self.errors)} and reset {formatShare(self.reset)}"
                " add up to more than 100%"
            )

    @classmethod
    def parse(
        cls,
        route: str = EVERY_ROUTE,
        latency: str | float = 0,
        errors: str | float = 0,
        reset: str | float = 0,
    ) -> "FaultRule":
        """
        A rule from an operator's values (C{"200ms"}, C{"5%"}, numbers).

        @raise FaultError: naming the first bad one.
        """
        return cls(
            route=checkRoute(route),
            latency=parseLatency(latency),
            errors=parseShare("errors", errors),
            reset=parseShare("reset", reset),
        )

    @property
    def active(self) -> bool:
        return bool(self.latency or self.errors or self.reset)

    def asJSON(self) -> dict[str, float]:
        return {"latency": self.latency, "errors": self.errors, "reset": self.reset}

    def describe(self) -> str:
        return (
            f"{self.route}: latency {formatLatency(self.latency)},"
            f" errors {formatShare(self.errors)}, reset {formatShare(self.reset)}"
        )


def formatLatency(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def formatShare(share: float) -> str:
    return f"{share * 100:g}%"


class FaultState:
    """
    The rules of one process, by route, and which one a request path falls
    under: the longest prefix that matches, else C{*}'s, else none.
    """

    def __init__(self) -> None:
        self._rules: dict[str, FaultRule] = {}
        self._prefixes: tuple[tuple[bytes, FaultRule], ...] = ()
        self._everyRoute: FaultRule | None = None
        self._watchers: list[Callable[[], None]] = []

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def rules(self) -> dict[str, FaultRule]:
        return dict(self._rules)

    def watch(self, watcher: Callable[[], None]) -> None:
        """
        Call C{watcher} after every change.
        """
        self._watchers.append(watcher)

    def set(self, rule: FaultRule) -> None:
        """
        Make C{rule} its route's rule; a rule that does nothing clears it.

        @raise FaultError: if L{MAX_RULES} are set already.
        """
        if not rule.active:
            self.clear(rule.route)
            return
        if rule.route not in self._rules and len(self._rules) >= MAX_RULES:
            raise FaultError(f"at most {MAX_RULES} routes may have a fault at once")
        self._rules[rule.route] = rule
        self._changed()

    def clear(self, route: str | None = None) -> None:
        """
        Clear C{route}'s rule, or every rule.
        """
        if route is None:
            self._rules.clear()
        else:
            self._rules.pop(route, None)
        self._changed()

    def ruleFor(self, path: bytes) -> FaultRule | None:
        """
        The rule a request for C{path} falls under, if any.
        """
        if path.startswith(_NEVER_FAULTED):
            return None
        for prefix, rule in self._prefixes:
            if path.startswith(prefix):
                return rule
        return self._everyRoute

    def asJSON(self) -> dict[str, dict[str, float]]:
        return {route: rule.asJSON() for route, rule in sorted(self._rules.items())}

    def _changed(self) -> None:
        self._everyRoute = self._rules.get(EVERY_ROUTE)
        self._prefixes = tuple(
            sorted(
                (
                    (route.encode("ascii"), rule)
                    for route, rule in self._rules.items()
                    if route != EVERY_ROUTE
                ),
                key=lambda pair: len(pair[0]),
                reverse=True,
            )
        )
        for watcher in self._watchers:
            watcher()


class FaultMetrics:
    """
    The switch in C{/metrics}: its state as gauges by route, read when
    scraped, and a counter of the faults injected, by kind.
    """

    def __init__(self, registry: CollectorRegistry, state: FaultState) -> None:
        self._state = state
        self.injected = Counter(
            "faults_injected",
            "Faults the fault switch injected, by kind: latency (a request"
            " delayed), error (a 500), reset (a connection aborted).",
            ["kind"],
            registry=registry,
        )
        self._count = {kind: adder(self.injected.labels(kind)) for kind in KINDS}
        registry.register(self)

    def count(self, kind: str) -> None:
        self._count[kind](1)

    def collect(self):
        rules = self._state.rules
        families = (
            ("fault_latency_seconds", "Latency the fault switch adds, by route (* is every other).", "latency"),
            ("fault_error_ratio", "Share of requests the fault switch answers 500, by route.", "errors"),
            ("fault_reset_ratio", "Share of connections the fault switch aborts, by route.", "reset"),
        )
        for name, documentation, attribute in families:
            family = GaugeMetricFamily(name, documentation, labels=["route"])
            for route, rule in sorted(rules.items()):
                family.add_metric([route], getattr(rule, attribute))
            yield family
        yield GaugeMetricFamily(
            "fault_rules", "Routes with a fault set (0: the switch is off).", value=len(rules)
        )

    def describe(self):
        return []


_PASS, _ERROR, _RESET = 0, 1, 2


@implementer(IResource)
class FaultResource:
    """
    What a site serves while a fault is set: each request under a rule
    waits the rule's latency (its timer cancelled if the client leaves
    first), then is answered C{500}, has its connection aborted, or goes to
    the real resource as usual, as one draw from C{random} says.  Requests
    under no rule go to the real resource at once.

    A leaf: it finds the real resource itself (as L{server.Request.process}
    does, encoder included) when the request's turn comes.

    @param random: a function returning a float in [0, 1).
    """

    isLeaf = True

    def __init__(
        self,
        root: IResource,
        state: FaultState,
        reactor,
        random: Callable[[], float],
        metrics: FaultMetrics,
    ) -> None:
        self._root = root
        self._state = state
        self._reactor = reactor
        self._random = random
        self._metrics = metrics

    def render(self, request):
        rule = self._state.ruleFor(request.path)
        if rule is None:
            return self._serve(request)
        draw = self._random()
        if draw < rule.reset:
            action = _RESET
        elif draw < rule.reset + rule.errors:
            action = _ERROR
        else:
            action = _PASS
        if not rule.latency:
            return self._act(request, action)
        self._metrics.count("latency")
        request.setHeader(FAULT_HEADER, b"latency")
        timer = self._reactor.callLater(rule.latency, self._later, request, action)

        def gone(reason):
            if timer.active():
                timer.cancel()

        request.notifyFinish().addErrback(gone)
        return server.NOT_DONE_YET

    def _later(self, request, action: int) -> None:
        try:
            self._act(request, action)
        except BaseException:
            request.processingFailed(Failure())

    def _act(self, request, action: int):
        if action == _RESET:
            self._metrics.count("reset")
            channel = request.channel
            if channel is not None and channel.transport is not None:
                channel.transport.abortConnection()
            return server.NOT_DONE_YET
        if action == _ERROR:
            self._metrics.count("error")
            request.setHeader(FAULT_HEADER, b"error")
            renderError(request, 500, "A fault was injected (the fault switch is on).")
            return server.NOT_DONE_YET
        return self._serve(request)

    def _serve(self, request):
        found = getChildForRequest(self._root, request)
        # What Request.process does with the resource it finds.
        if _resource._IEncodingResource.providedBy(found):
            encoder = found.getEncoder(request)
            if encoder is not None:
                request._encoder = encoder
        request.render(found)
        return server.NOT_DONE_YET

    def getChildWithDefault(self, name, request):  # pragma: no cover - leaf
        return self._root.getChildWithDefault(name, request)

    def putChild(self, path, child):  # pragma: no cover - leaf
        raise NotImplementedError


class FaultSwitch:
    """
    One process's fault switch: its state, metrics and wrapper, for
    C{site}.  While no rule is set the site serves its own root, untouched;
    the first rule puts L{FaultResource} in its place, and clearing the
    last one puts the root back.

    @param random: a function returning a float in [0, 1); a seeded
        C{random.Random().random} in tests.
    """

    def __init__(
        self,
        site: server.Site,
        *,
        reactor,
        registry: CollectorRegistry,
        random: Callable[[], float] | None = None,
        name: str = "",
    ) -> None:
        self.name = name
        self.state = FaultState()
        self.metrics = FaultMetrics(registry, self.state)
        self._site = site
        self._root = site.resource
        self.wrapper = FaultResource(
            self._root,
            self.state,
            reactor,
            random or _random.Random().random,
            self.metrics,
        )
        self.state.watch(self._changed)

    def _changed(self) -> None:
        self._site.resource = self.wrapper if self.state else self._root
        log.info(
            "{service} faults: {rules}",
            event="faults_changed",
            service=self.name,
            rules=self.describe(),
        )

    def describe(self) -> str:
        rules = self.state.rules
        if not rules:
            return "none"
        return "; ".join(rule.describe() for _, rule in sorted(rules.items()))

    def document(self) -> dict[str, Any]:
        """
        The state, as C{GET /faults} answers it.
        """
        return {
            "service": self.name,
            "served_by": SERVED_BY.decode("ascii", "replace"),
            "rules": self.state.asJSON(),
            "never_faulted": list(NEVER_FAULTED),
        }


# The admin listener.


def _answer(request, status: int, document: Mapping[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document).encode("utf-8") + b"\n"


class FaultsAdminResource(Resource):
    """
    C{/faults}: C{GET} the state; C{PUT} or C{POST} a JSON object
    C{{"route": "/async/", "latency": "200ms", "errors": "5%", "reset": 0}}
    to set that route's rule (keys left out are 0; all 0 clears it);
    C{DELETE} to clear every rule, or C{DELETE /faults?route=/async/} one.
    Every answer is the state after it, or C{400} saying what is wrong.
    """

    isLeaf = True
    _KEYS = frozenset({"route", "latency", "errors", "reset"})

    def __init__(self, switch: FaultSwitch) -> None:
        super().__init__()
        self._switch = switch

    def render_GET(self, request):
        return _answer(request, 200, self._switch.document())

    def render_PUT(self, request):
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        try:
            if len(body) > MAX_BODY:
                raise FaultError(f"the body is over {MAX_BODY} bytes")
            try:
                given = json.loads(body or b"{}")
            except ValueError:
                raise FaultError("the body is not JSON") from None
            if not isinstance(given, dict):
                raise FaultError("the body must be a JSON object")
            unknown = set(given) - self._KEYS
            if unknown:
                raise FaultError(
                    f"unknown key(s) {', '.join(sorted(map(str, unknown)))}:"
                    f" known are {', '.join(sorted(self._KEYS))}"
                )
            self._switch.state.set(FaultRule.parse(**given))
        except (FaultError, TypeError) as e:
            return _answer(request, 400, {"error": str(e)})
        return _answer(request, 200, self._switch.document())

    render_POST = render_PUT

    def render_DELETE(self, request):
        route = request.args.get(b"route", [None])[0]
        self._switch.state.clear(route.decode("utf-8", "replace") if route else None)
        return _answer(request, 200, self._switch.document())


class AdminSite(server.Site):
    """
    The admin listener's site: no access log of its own (each change is
    logged as C{faults_changed}) and no timers.
    """

    noisy = False
    displayTracebacks = False

    def startFactory(self) -> None:
        pass

    def stopFactory(self) -> None:
        pass

    def log(self, request) -> None:
        pass


def adminSite(switch: FaultSwitch) -> AdminSite:
    root = Resource()
    root.putChild(b"faults", FaultsAdminResource(switch))
    return AdminSite(root, timeout=30)


class AdminService(Service):
    """
    Serve the fault switch's admin site on C{description}; log the address
    (C{event="admin_listening"}, with C{host} and C{port}) once listening.
    """

    def __init__(self, reactor, description: str, switch: FaultSwitch) -> None:
        self._reactor = reactor
        self._description = description
        self._switch = switch
        self.port = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        failures: list[Failure] = []
        endpoint = serverFromString(self._reactor, self._description)
        endpoint.listen(adminSite(self._switch)).addCallbacks(
            self._listening, failures.append
        )
        if failures:
            reason = failures[0]
            if reason.check(CannotListenError):
                sys.stderr.write(
                    f"{self._switch.name}: cannot listen on admin_listen: {reason.value}\n"
                )
                raise SystemExit(1)
            reason.raiseException()

    def _listening(self, port) -> None:
        self.port = port
        address = port.getHost()
        log.info(
            "{service} fault switch listening on {host}:{port}",
            event="admin_listening",
            service=self._switch.name,
            host=getattr(address, "host", "-"),
            port=getattr(address, "port", 0),
        )

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


# Where the admin listener is.

_COLON = re.compile(r"(?<!\\):")


def _adminAddress(description: str) -> tuple[str, str, int, dict[str, str]]:
    """
    The kind, loopback interface, port and other arguments of a TCP
    C{admin_listen} description.

    @raise ConfigError: unless it is C{tcp} or C{tcp6} on a loopback address.
    """
    parts = _COLON.split(description)
    kind = parts[0]
    if kind not in ("tcp", "tcp6"):
        raise ConfigError(
            f"admin_listen = {description!r} is invalid: the fault switch listens"
            " on tcp or tcp6 only (e.g. tcp:9000:interface=127.0.0.1), or \"\" for off"
        )
    positional = [p for p in parts[1:] if "=" not in p]
    named = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    port = named.pop("port", positional[0] if positional else "")
    interface = named.pop("interface", "").replace("\\:", ":")
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"admin_listen = {description!r} is invalid: no port (e.g."
            " tcp:9000:interface=127.0.0.1)"
        ) from None
    try:
        loopback = ipaddress.ip_address(interface).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"admin_listen = {description!r} is invalid: the fault switch has no"
            " password, so it listens on loopback only (interface=127.0.0.1 or"
            " interface=\\:\\:1)"
        )
    return kind, interface, number, named


def adminListen(description: str, worker: int = 1) -> str:
    """
    The admin description of worker C{worker} (1, 2, ...) of a service
    whose C{admin_listen} is C{description}: its port plus C{worker - 1}
    (port 0 stays 0).  C{""} stays off.
    """
    if not description or worker == 1:
        return description
    kind, interface, port, named = _adminAddress(description)
    port = port + worker - 1 if port else 0
    rest = "".join(f":{key}={value}" for key, value in named.items())
    escaped = interface.replace(":", "\\:")
    return f"{kind}:{port}:interface={escaped}{rest}"


def workerNumber(workerId: bytes | None) -> int:
    """
    The worker's number from its C{X-Worker} value (C{b"front/2/1234"}),
    1 for a single process (C{None}).
    """
    if not workerId:
        return 1
    return int(workerId.split(b"/")[1])


def checkAdminListen(reactor, description: str, workers: int) -> None:
    """
    Check C{admin_listen} at start-up, for each of C{workers} processes.

    @raise ConfigError: with one line saying what is wrong.
    """
    if not description:
        return
    port = _adminAddress(description)[2]
    if port and port + workers - 1 > 65535:
        raise ConfigError(
            f"admin_listen = {description!r} is invalid: with {workers} workers,"
            f" worker N listens on port {port} + N - 1, over 65535"
        )
    for worker in range(1, workers + 1):
        try:
            serverFromString(reactor, adminListen(description, worker))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"admin_listen = {description!r} is not a valid endpoint description: {e}"
            ) from None


def adminServices(reactor, description: str, switch: FaultSwitch, workerId=None) -> list:
    """
    The admin listener of C{switch}, as a list of the services to start
    with the service (none when C{description} is C{""}).
    """
    if not description:
        return []
    return [AdminService(reactor, adminListen(description, workerNumber(workerId)), switch)]


def adminAddresses(description: str, workers: int) -> list[tuple[str, int]]:
    """
    The (host, port) of every worker's admin listener.

    @raise ConfigError: when the switch is off or on an ephemeral port.
    """
    if not description:
        raise ConfigError(
            "its admin_listen is \"\" (off): set WEBSTACK_<SERVICE>_ADMIN_LISTEN,"
            " e.g. tcp:9000:interface=127.0.0.1, or give --port"
        )
    _, interface, port, _ = _adminAddress(description)
    if port == 0:
        raise ConfigError(
            f"its admin_listen = {description!r} is on a port the kernel chose:"
            " give --port (the service logs it, event admin_listening)"
        )
    return [(interface, port + worker) for worker in range(workers)]


# The command line.


def _serviceAdmin(service: str, environ: Mapping[str, str]) -> tuple[str, int]:
    """
    C{admin_listen} and the number of processes of C{service}, read as the
    service reads them (C{stack.toml}, then the environment).
    """
    from .config import Layer, buildSettings, configPath, readConfig, table
    from .settings import RuntimeSettings
    from .workers import workerCount

    path = configPath(environ)
    document = readConfig(path)
    layers = [
        Layer(("runtime",), table(document, "runtime"), path),
        Layer((service,), table(document, service), path),
    ]
    otherKeys = {key for layer in layers for key in layer.values}
    runtime = buildSettings(RuntimeSettings, layers, environ, foreignKeys=otherKeys)
    return runtime.admin_listen, workerCount(runtime.workers)


def _call(host: str, port: int, method: str, path: str, body: bytes | None = None):
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webstack.runtime.faults",
        description="Set, clear or show a running service's faults (see the module's docstring).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (
        ("set", "set the faults of one route (ROUTE, default *: every route)"),
        ("clear", "clear one route's faults, or all of them"),
        ("show", "show the faults set"),
        ("check", "only check the values, talking to nothing"),
    ):
        command = commands.add_parser(name, help=what)
        if name != "check":
            command.add_argument("--service", help="the service (its table in stack.toml)")
            command.add_argument(
                "--port",
                type=int,
                action="append",
                help="an admin port on 127.0.0.1 (repeatable); default: from the"
                " service's admin_listen, one per worker",
            )
        command.add_argument("--route", default=None, help="a path prefix, or * (default)")
        if name in ("set", "check"):
            command.add_argument("--latency", default="0", help="e.g. 200ms, 1.5s")
            command.add_argument("--errors", default="0", help="share answered 500, e.g. 5%%")
            command.add_argument("--reset", default="0", help="share of connections aborted, e.g. 1%%")
    return parser


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """
    The command line: 0 on success, 2 for a bad value (one line on standard
    error), 1 when a service cannot be reached.
    """
    environ = os.environ if environ is None else environ
    args = _parser().parse_args(argv)
    prog = "faults"
    try:
        if args.command in ("set", "check"):
            rule = FaultRule.parse(
                args.route or EVERY_ROUTE, args.latency, args.errors, args.reset
            )
            if args.command == "check":
                print(rule.describe() if rule.active else f"{rule.route}: no fault")
                return 0
        elif args.route is not None:
            checkRoute(args.route)
        if args.port:
            addresses = [("127.0.0.1", port) for port in args.port]
        else:
            if not args.service:
                raise FaultError("give --service NAME (or --port)")
            description, workers = _serviceAdmin(args.service, environ)
            addresses = adminAddresses(description, workers)
    except (FaultError, ConfigError) as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return 2
    status = 0
    for host, port in addresses:
        where = f"{args.service} {host}:{port}" if args.service else f"{host}:{port}"
        try:
            if args.command == "set":
                body = json.dumps({"route": rule.route, **rule.asJSON()}).encode()
                code, document = _call(host, port, "PUT", "/faults", body)
            elif args.command == "clear":
                query = "" if args.route is None else "?route=" + _quote(args.route)
                code, document = _call(host, port, "DELETE", "/faults" + query)
            else:
                code, document = _call(host, port, "GET", "/faults")
        except (OSError, ValueError, http.client.HTTPException) as e:
            sys.stderr.write(f"{prog}: {where}: cannot reach the fault switch: {e}\n")
            status = 1
            continue
        if code != 200:
            sys.stderr.write(f"{prog}: {where}: {document.get('error', code)}\n")
            status = 2
            continue
        rules = document.get("rules", {})
        shown = "; ".join(
            FaultRule(route=route, **values).describe() for route, values in rules.items()
        )
        print(f"{where} ({document.get('served_by', '?')}): {shown or 'no faults'}")
    return status


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


if __name__ == "__main__":
    raise SystemExit(main())
