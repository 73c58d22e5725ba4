# -*- test-case-name: webstack.tests.test_cgi -*-
"""
Seed 004, "CGI": L{CGIScript} and L{FilteredScript}, guarded.

Stock L{twisted.web.twcgi} gives a script the server's whole environment
("Propagate our environment"), so every secret in it; and when the client
goes away it only notes it, letting the script run on.  Here:

  - the script's environment is the CGI variables of the request, plus the
    variables named in C{cgi.pass_env} taken from the server's own; nothing
    else (and no C{HTTP_PROXY}, httpoxy);
  - the script runs in a session of its own (C{setsid}), so that it and
    everything it started can be stopped together;
  - a client that goes away, or a script that runs past C{cgi.timeout},
    gets the whole group SIGTERM, then SIGKILL after C{cgi.kill_grace};
    a client still waiting for headers gets C{504};
  - Twisted reaps the script; its children, killed with it, are reaped by
    the init process (compose runs one), so no zombie is left.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet.error import ProcessDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import twcgi

from webstack.runtime.errors import renderError

log = Logger(namespace="webstack.cgi")

SETSID = shutil.which("setsid")

CGI_VARIABLES = frozenset(
    {
        "SERVER_SOFTWARE", "SERVER_NAME", "GATEWAY_INTERFACE", "SERVER_PROTOCOL",
        "SERVER_PORT", "REQUEST_METHOD", "SCRIPT_NAME", "SCRIPT_FILENAME",
        "REQUEST_URI", "REMOTE_ADDR", "PATH_INFO", "QUERY_STRING",
        "CONTENT_LENGTH", "CONTENT_TYPE",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Guard:
    """
    What every script run is held to, and where its outcome is counted.
    """

    reactor: object
    timeout: float
    killGrace: float
    passEnv: tuple[str, ...]
    count: object  # callable(script, outcome)


def scriptEnvironment(env: dict, request, passEnv: Iterable[str]) -> dict[str, str | bytes]:
    """
    Keep, of the environment L{twcgi.CGIScript.render} built, only the CGI
    variables and the request's own headers, then add C{passEnv} from the
    server's environment.
    """
    fromHeaders = {
        "HTTP_" + name.decode("latin-1").replace("-", "_").upper()
        for name in request.getAllHeaders()
        if name not in (b"content-type", b"content-length", b"proxy")
    }
    kept: dict[str, str | bytes] = {}
    for key, value in env.items():
        name = key.decode("latin-1") if isinstance(key, bytes) else key
        if name in CGI_VARIABLES or name in fromHeaders:
            kept[name] = value
    if "CONTENT_TYPE" not in kept and request.getHeader(b"content-type"):
        kept["CONTENT_TYPE"] = request.getHeader(b"content-type")
    for name in passEnv:
        if name in os.environ:
            kept[name] = os.environ[name]
    return kept


class GuardedProcessProtocol(twcgi.CGIProcessProtocol):
    """
    L{twcgi.CGIProcessProtocol} that stops its script when the client leaves
    or the time is up.
    """

    def __init__(self, request, guard: Guard, script: str) -> None:
        self._guard = guard
        self._script = script
        self._answered = False
        self._killed = ""
        self._killTimer = None
        super().__init__(request)
        self._deadline = guard.reactor.callLater(guard.timeout, self._timedOut)

    def _finished(self, result):
        super()._finished(result)
        if isinstance(result, Failure) and not self._answered:
            self._stop("client_gone")

    def _timedOut(self):
        self._deadline = None
        if self.handling_headers and not self._requestFinished:
            self._answered = True
            self.request.unregisterProducer()
            renderError(
                self.request,
                504,
                f"The script did not answer within {self._guard.timeout:g} s and was stopped.",
            )
        elif not self._requestFinished:
            # Part of the answer is out: end the connection, so the client
            # sees it cut short rather than complete.
            self._answered = True
            self.request.unregisterProducer()
            self.request.channel.transport.abortConnection()
        self._stop("timeout")

    def _stop(self, why: str) -> None:
        pid = getattr(self.transport, "pid", None)
        if pid is None or self._killed:
            return
        self._killed = why
        log.warn(
            "CGI {script}: stopping it ({reason})",
            event="cgi_stopped",
            script=self._script,
            reason=why,
            pid=pid,
        )
        self._signal(signal.SIGTERM)
        self._killTimer = self._guard.reactor.callLater(
            self._guard.killGrace, self._signal, signal.SIGKILL
        )

    def _signal(self, number) -> None:
        pid = getattr(self.transport, "pid", None)
        if pid is None:
            return
        try:
            if SETSID:
                os.killpg(pid, number)
            else:
                os.kill(pid, number)
        except ProcessLookupError:
            pass

    def processEnded(self, reason):
        for timer in (self._deadline, self._killTimer):
            if timer is not None and timer.active():
                timer.cancel()
        if self._killed:
            # Make sure nothing it started outlives it.
            self._signal(signal.SIGKILL)
            outcome = self._killed
        elif reason.check(ProcessDone):
            outcome = "ok"
        else:
            outcome = "failed"
        self._guard.count(self._script, outcome)
        if self._answered or self._requestFinished:
            return
        super().processEnded(reason)


def _spawn(script, request, env, guard: Guard, program: list[str]) -> None:
    protocol = GuardedProcessProtocol(request, guard, os.path.basename(script))
    argv = [SETSID, *program] if SETSID else program
    guard.reactor.spawnProcess(
        protocol,
        argv[0],
        argv,
        scriptEnvironment(env, request, guard.passEnv),
        os.path.dirname(script),
    )


class GuardedCGIScript(twcgi.CGIScript):
    """
    The seed's L{CGIScript} (an executable script), guarded.
    """

    def __init__(self, filename: str, guard: Guard) -> None:
        super().__init__(filename, reactor=guard.reactor)
        self.guard = guard

    def runProcess(self, env, request, qargs=[]):
        _spawn(self.filename, request, env, self.guard, [self.filename, *qargs])


class GuardedFilteredScript(twcgi.FilteredScript):
    """
    The seed's L{FilteredScript} (a script run by a named interpreter),
    guarded.
    """

    def __init__(self, filename: str, interpreter: str, guard: Guard) -> None:
        super().__init__(filename, reactor=guard.reactor)
        self.filter = interpreter
        self.guard = guard

    def runProcess(self, env, request, qargs=[]):
        _spawn(self.filename, request, env, self.guard, [self.filter, self.filename, *qargs])
