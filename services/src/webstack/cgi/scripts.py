# -*- test-case-name: tests.test_cgi -*-
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
  - at most C{cgi.max_processes} scripts run at once (L{ScriptSlots}); a
    request beyond that, or one whose script cannot be started (no process
    or memory left: the container's limits), gets C{503} with
    C{Retry-After} at once, never a place in a queue;
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

from .slots import ScriptSlots

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
    slots: ScriptSlots
    retryAfter: int  # s, in the Retry-After of a refusal
    refused: object  # callable(reason): "busy" or "spawn_failed"


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

    def notStarted(self) -> None:
        """
        The script could not be spawned: forget its deadline, and answer
        nothing (the caller does).
        """
        self._answered = True
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

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
        self._guard.slots.release()
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


def refuse(request, guard: Guard, reason: str, detail: str) -> None:
    """
    Answer C{503} with C{Retry-After} and count the refusal by C{reason}.
    """
    guard.refused(reason)
    request.setHeader(b"retry-after", b"%d" % (guard.retryAfter,))
    renderError(request, 503, detail, retry_after=guard.retryAfter)


def _spawn(script, request, env, guard: Guard, program: list[str]) -> None:
    """
    Run C{program} for C{request} if a slot is free, else refuse it; the
    slot is given back in L{GuardedProcessProtocol.processEnded}, or here if
    the process could not be made.
    """
    if not guard.slots.acquire():
        refuse(
            request,
            guard,
            "busy",
            f"All {guard.slots.capacity} script slots are taken; try again shortly.",
        )
        return
    name = os.path.basename(script)
    protocol = GuardedProcessProtocol(request, guard, name)
    argv = [SETSID, *program] if SETSID else program
    try:
        guard.reactor.spawnProcess(
            protocol,
            argv[0],
            argv,
            scriptEnvironment(env, request, guard.passEnv),
            os.path.dirname(script),
        )
    except OSError as e:
        # fork, exec or a pipe refused: the container's pids, memory or
        # descriptor limit.  Not the client's doing, and gone once other
        # scripts end: the same answer as a full house.
        guard.slots.release()
        protocol.notStarted()
        log.warn(
            "CGI {script}: could not start it: {error}",
            event="cgi_spawn_failed",
            script=name,
            error=e.strerror or str(e),
        )
        refuse(
            request,
            guard,
            "spawn_failed",
            "The script could not be started now; try again shortly.",
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
