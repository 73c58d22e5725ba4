# -*- test-case-name: tests.test_cgi -*-
"""
The CGI service (C{twistd -n webstack-cgi}): the scripts of C{config/cgi-bin/}
at C{/cgi/NAME}.

Only what is in that directory runs, and only a regular file that is either
executable (run as L{GuardedCGIScript}, the seed's C{CGIScript}) or has an
extension mapped to an interpreter in C{cgi.interpreters} (run as
L{GuardedFilteredScript}, the seed's C{FilteredScript}).  Anything else,
dotfiles, directories and links leading out included, is not found.

At most C{cgi.max_processes} scripts run at once; a request beyond that is
refused at once with C{503} and C{Retry-After} (L{webstack.cgi.slots}).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from html import escape

from prometheus_client import Counter, Gauge
from twisted.python.filepath import FilePath, InsecurePath
from twisted.web.resource import Resource

from webstack.runtime.config import ConfigError, setting
from webstack.runtime.errors import ErrorPage
from webstack.runtime.metrics import adder
from webstack.runtime.plugin import App, AppContext

from .scripts import SETSID, Guard, GuardedCGIScript, GuardedFilteredScript, log
from .slots import ScriptSlots

SECTION = "cgi"


@dataclass(frozen=True)
class Settings:
    root: str = setting("cgi-bin", help="the scripts, relative to stack.toml's directory")
    timeout: float = setting(10.0, minimum=0.1, maximum=3600, help="stop a script after (s)")
    kill_grace: float = setting(2.0, minimum=0, maximum=60, help="SIGTERM to SIGKILL (s)")
    interpreters: str = setting(
        ".sh=/bin/sh", help="extension=interpreter, comma-separated (FilteredScript)"
    )
    pass_env: str = setting("PATH,LANG,TZ", help="server variables a script may see")
    max_processes: int = setting(
        32, minimum=1, maximum=4096, help="scripts running at once; more get 503 at once"
    )
    retry_after: int = setting(
        1, minimum=0, maximum=3600, help="s, the Retry-After of a 503 when all are running"
    )

    def interpreterMap(self) -> dict[str, str]:
        mapping = {}
        for item in filter(None, (p.strip() for p in self.interpreters.split(","))):
            extension, sep, program = item.partition("=")
            if not sep or not extension.startswith(".") or not program.startswith("/"):
                raise ConfigError(
                    f"cgi.interpreters = {self.interpreters!r} is invalid: {item!r}"
                    " is not .ext=/absolute/interpreter"
                )
            mapping[extension] = program
        return mapping

    def __post_init__(self) -> None:
        self.interpreterMap()


class ScriptDirectory(Resource):
    """
    C{/cgi/}: an index of the scripts, and each runnable one as a child.
    """

    def __init__(self, root: FilePath, guard: Guard, interpreters: dict[str, str]) -> None:
        super().__init__()
        self.root = root.realpath()
        self.guard = guard
        self.interpreters = interpreters

    def runnable(self, name: str):
        """
        The resource that runs C{name}, or L{None} if it may not run.
        """
        if not name or name.startswith("."):
            return None
        try:
            path = self.root.child(name)
        except InsecurePath:
            return None
        if not path.isfile() or path.realpath().parent() != self.root:
            return None
        if os.access(path.path, os.X_OK):
            return GuardedCGIScript(path.path, self.guard)
        interpreter = self.interpreters.get(path.splitext()[1])
        if interpreter is not None:
            return GuardedFilteredScript(path.path, interpreter, self.guard)
        return None

    def getChild(self, name, request):
        if name == b"":
            return self
        try:
            script = self.runnable(name.decode("utf-8"))
        except UnicodeDecodeError:
            script = None
        return script if script is not None else ErrorPage(404, "No such script here may run.")

    def render_GET(self, request):
        names = sorted(p.basename() for p in self.root.children())
        items = "".join(
            f'<li><a href="{escape(n)}">{escape(n)}</a></li>'
            for n in names
            if self.runnable(n) is not None
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>CGI</title></head><body><h1>CGI scripts</h1><ul>{items}</ul>"
            "</body></html>"
        ).encode("utf-8")


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    runs = Counter(
        "cgi_runs_total",
        "CGI script runs by script and outcome (ok, failed: non-zero exit,"
        " client_gone / timeout: stopped by the service).",
        ["script", "outcome"],
        registry=context.registry,
    )
    running = Gauge(
        "cgi_scripts_running",
        "CGI scripts running now (spawned, not yet ended); at most cgi.max_processes.",
        registry=context.registry,
        multiprocess_mode="livesum",
    )
    limit = Gauge(
        "cgi_max_processes",
        "cgi.max_processes: the scripts that may run at once (per process).",
        registry=context.registry,
        multiprocess_mode="liveall",
    )
    limit.set(settings.max_processes)
    rejected = Counter(
        "cgi_rejected_total",
        "CGI requests answered 503 without running their script, by reason"
        " (busy: cgi.max_processes running; spawn_failed: no process could be made).",
        ["reason"],
        registry=context.registry,
    )
    for reason in ("busy", "spawn_failed"):
        rejected.labels(reason)
    if SETSID is None:
        log.warn("setsid not found: a stopped script's own children may outlive it")
    guard = Guard(
        reactor=context.reactor,
        timeout=settings.timeout,
        killGrace=settings.kill_grace,
        passEnv=tuple(filter(None, (n.strip() for n in settings.pass_env.split(",")))),
        count=lambda script, outcome: runs.labels(script, outcome).inc(),
        slots=ScriptSlots(settings.max_processes, adder(running)),
        retryAfter=settings.retry_after,
        refused=lambda reason: rejected.labels(reason).inc(),
    )
    scripts = ScriptDirectory(
        context.configPath(settings.root), guard, settings.interpreterMap()
    )
    root = Resource()
    root.putChild(b"cgi", scripts)
    context.mountOps(root)
    return App(resource=root, routes=["/cgi/", "/healthz", "/readyz", "/metrics"])
