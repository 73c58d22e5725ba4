# -*- test-case-name: tests.test_layout -*-
"""
The stack's services, in one place.

Each service has one name: its table in C{config/stack.toml}, its compose
service, its twistd plugin (C{webstack-NAME}) and, for a backend, the front
route of the same name.  What else is known of it is here too: the package
that implements it, the port it listens on under C{make run}, the routes it
serves, and, for the landing page, what each route demonstrates (the seeds of
"Twisted Web in 60 seconds" it grows from, and a few links to try).

What reads this: the twistd plugins (C{twisted/plugins/webstack_services.py}),
the local supervisor (L{webstack.localstack}), the landing page
(L{webstack.front.landing}).  C{config/stack.toml} and C{docker-compose.yml}
are written by hand, for people to read and edit, and C{tests/test_layout.py}
checks that they agree with this.  Adding a service: a package with an
C{app.py} (C{makeApp}), an entry here, its table and routes in C{stack.toml},
its block in C{docker-compose.yml}; the test names whatever is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    """
    A front route: requests under C{prefix} go to the service that has it.

    @ivar name: its table, C{[front.routes.NAME]}.
    @ivar title: what the landing page calls it.
    @ivar seeds: the seeds it grows from, as the landing page lists them.
    @ivar examples: C{(path, what it shows)} links to try.
    @ivar note: a warning the landing page shows with it.
    """

    name: str
    prefix: str
    title: str
    seeds: tuple[str, ...]
    examples: tuple[tuple[str, str], ...] = field(default=())
    note: str = ""


@dataclass(frozen=True)
class Service:
    """
    One service of the stack.

    @ivar name: its one name (see the module's docstring).
    @ivar package: the package implementing it; C{PACKAGE.app} has its
        C{makeApp}, C{SECTION} and C{Settings}.
    @ivar port: where it listens under C{make run} (C{stack.toml}).
    @ivar description: what C{twistd --help} says of its plugin.
    @ivar routes: the front routes it serves (none for the front).
    """

    name: str
    package: str
    port: int
    description: str
    routes: tuple[Route, ...] = ()

    @property
    def plugin(self) -> str:
        return f"webstack-{self.name}"

    @property
    def module(self) -> str:
        return f"{self.package}.app"


SERVICES: tuple[Service, ...] = (
    Service(
        "front",
        "webstack.front",
        8080,
        "The front: a streaming reverse proxy that routes to every demo service.",
    ),
    Service(
        "async",
        "webstack.async_",
        8081,
        "Asynchronous, Deferred-based, interrupted and logged delayed responses"
        " (Twisted Web in 60 seconds, seeds 000-003).",
        routes=(
            Route(
                "async",
                "/async/",
                "Asynchronous responses",
                (
                    "001 asynchronous responses (callLater, NOT_DONE_YET)",
                    "003 asynchronous responses via Deferred (deferLater)",
                    "000 interrupted responses (notifyFinish cancels the work)",
                    "002 logging errors (the interruption is logged)",
                ),
                (
                    ("/async/delay?seconds=2", "seed 001: answered after 2 s"),
                    ("/async/deferred?seconds=2", "seed 003: the same with deferLater"),
                    (
                        "/async/interruptible?seconds=10",
                        "seed 000: press Esc before 10 s, then see /async/stats",
                    ),
                    ("/async/logged?seconds=10", "seed 002: leave early, read the log"),
                    ("/async/stream?chunks=5&interval=1", "write() over time"),
                    ("/async/stats", "started / completed / cancelled / in flight"),
                ),
            ),
        ),
    ),
    Service(
        "static",
        "webstack.static",
        8082,
        "Static files (plain files only, nothing outside the root) and, for"
        " learning, the seeds' .rpy scripts.",
        routes=(
            Route(
                "static",
                "/static/",
                "Static files",
                ("static files (twisted.web.static.File): plain files only, never outside the root",),
                (
                    ("/static/", "the static site"),
                    ("/static/large.txt", "ask for a range: curl -r 0-99"),
                ),
            ),
            Route(
                "rpy",
                "/rpy/",
                "rpy scripts (for learning only)",
                (
                    "the seeds' own way to run their examples (twistd -n web --path .);"
                    " each is re-run per request unless it calls cache()",
                ),
                (
                    ("/rpy/", "the scripts"),
                    ("/rpy/delay.rpy", "seed 001 as an .rpy"),
                    ("/rpy/interruptible.rpy", "seed 000 as an .rpy"),
                    ("/rpy/counter.rpy", "the session counter seed, which needs cache()"),
                ),
                note="Learning only: an .rpy is code the server runs; deploy modules.",
            ),
        ),
    ),
    Service(
        "wsgi",
        "webstack.wsgi",
        8083,
        "WSGI applications on a thread pool of their own (seed 004).",
        routes=(
            Route(
                "wsgi",
                "/wsgi/",
                "WSGI",
                ("004 WSGI (WSGIResource on its own thread pool)",),
                (
                    ("/wsgi/hello", "the seed's hello application"),
                    ("/wsgi/app/form", "a form that posts and echoes"),
                    ("/wsgi/app/environ", "the WSGI environment"),
                    ("/wsgi/app/slow?seconds=2", "hold a pool thread (see /metrics)"),
                ),
            ),
        ),
    ),
    Service(
        "cgi",
        "webstack.cgi",
        8084,
        "CGI scripts (CGIScript, FilteredScript; seed 004), guarded: no secrets in"
        " their environment, stopped when the client leaves or time is up.",
        routes=(
            Route(
                "cgi",
                "/cgi/",
                "CGI",
                ("004 CGI (CGIScript, FilteredScript)",),
                (
                    ("/cgi/date-example.sh", "the seed's date script (CGIScript)"),
                    ("/cgi/date-filtered.sh", "the same through /bin/sh (FilteredScript)"),
                    ("/cgi/echo.py?a=1&b=<2>", "a Python CGI echoing its query, escaped"),
                    ("/cgi/hang.sh", "never answers: stopped, 504, at cgi.timeout"),
                ),
            ),
        ),
    ),
    Service(
        "auth",
        "webstack.auth",
        8085,
        "HTTP Basic and Digest authentication with a per-user realm (seed 004),"
        " hashed passwords, throttled failures.",
        routes=(
            Route(
                "auth",
                "/auth/",
                "HTTP authentication",
                ("004 HTTP authentication (guard, Basic and Digest, a per-user realm)",),
                (
                    ("/auth/", "log in as alice (wonderland-2026) or bob (builder-2026)"),
                ),
            ),
        ),
    ),
    Service(
        "session",
        "webstack.session",
        8086,
        "Sessions: basics, objects stored by adaptation, endings (seed 004), with"
        " sliding expiry and HttpOnly/SameSite cookies.",
        routes=(
            Route(
                "session",
                "/session/",
                "Sessions",
                (
                    "004 session basics (getSession, uid, expire)",
                    "004 storing objects in the session (ICounter adapter)",
                    "004 session endings (sessionTimeout, notifyOnExpire)",
                ),
                (
                    ("/session/", "your session id"),
                    ("/session/counter", "a visit counter kept in the session (ICounter)"),
                    ("/session/logme", "logs your session's expiry"),
                    ("/session/expire", "end your session now"),
                ),
            ),
        ),
    ),
)
"""
Every service, the front first, then the backends in the order they start.
"""

FRONT = SERVICES[0]
BACKENDS: tuple[Service, ...] = SERVICES[1:]
ROUTES: tuple[Route, ...] = tuple(route for service in BACKENDS for route in service.routes)


def service(name: str) -> Service:
    """
    The service called C{name}.

    @raise KeyError: if there is none.
    """
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def route(name: str) -> Route | None:
    """
    The route called C{name}, or L{None} (a route added in C{stack.toml}
    alone is still served and listed, without a description).
    """
    for candidate in ROUTES:
        if candidate.name == name:
            return candidate
    return None
