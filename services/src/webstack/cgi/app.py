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
from html import escape

from prometheus_client import Counter, Gauge
from twisted.python.filepath import FilePath, InsecurePath
from twisted.web.resource import Resource

from webstack.runtime.errors import ErrorPage
from webstack.runtime.metrics import adder
from webstack.runtime.plugin import App, AppContext

from .scripts import SETSID, Guard, GuardedCGIScript, GuardedFilteredScript, log
from .settings import SECTION, Settings
from .slots import ScriptSlots

__all__ = ["SECTION", "Settings", "makeApp"]


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
        passEnv=settings.passEnv(),
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
    return App(resource=root, routes=["/cgi/"])
