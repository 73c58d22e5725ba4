# -*- test-case-name: tests.test_workers -*-
"""
Several processes serving one listening socket (C{workers} in C{stack.toml}).

One Python process runs one reactor on one core; a busy front needs more.
With C{workers = N} (N > 1) the twistd process becomes a parent,
L{WorkerParent}, that:

  - opens the listening socket once, from the service's C{listen}
    description, and never accepts on it: it only holds it, so that a
    worker's death or restart never closes it or drops a connection waiting
    in its queue;
  - starts N workers (C{python -m webstack.runtime.workers}), each given the
    socket as its descriptor 3, which it adopts
    (L{IReactorSocket.adoptStreamPort}) and accepts on, with the same
    settings, app and drain as a single process; the kernel hands each new
    connection to whichever worker accepts first;
  - restarts a worker that dies, after a backoff (L{RestartBackoff});
  - on SIGTERM closes its own copy of the socket first, then sends SIGTERM
    to every worker, waits until each has drained (SIGKILL after
    C{drain_timeout} plus L{KILL_MARGIN}), and exits 0.  A parent killed
    outright leaves no orphans serving on: each worker's stdin is a pipe
    from it, and its end stops the worker.

Metrics are summed over the workers with prometheus_client's multiprocess
mode: the parent makes an empty directory, the workers' metrics live in
files there (C{PROMETHEUS_MULTIPROC_DIR}, set in their environment so that it
is there before prometheus_client is imported), and whichever worker answers
C{/metrics} reads them all (see L{webstack.runtime.metrics.MetricsResource}).

A worker says who it is: its log lines carry C{"worker": N}, and its
responses an C{X-Worker: SERVICE/N/PID} header.

With C{workers = 1} (the default) none of this exists: the twistd process
serves, as it always did.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError, ProcessExitedAlready
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.internet.protocol import ProcessProtocol, ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from .logs import addField
from .service import handleSigterm, stopReactor

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_MODULE = "webstack.runtime.workers"
WORKER_HEADER = b"x-worker"
WRAPPER_ENV = "WEBSTACK_WORKER_WRAPPER"
"""
The environment variable that names a command to run each worker under
(split as a shell splits words; C{make bench-instructions} sets it to
callgrind).  Unset, a worker is started as the parent's Python.
"""
LISTEN_FD = 3
"""
The descriptor a worker finds the listening socket on.
"""
KILL_MARGIN = 3.0
"""
Seconds a worker gets beyond its C{drain_timeout} (its stop hooks, closing
pooled connections, run after the drain) before the parent kills it.  Under
compose's C{stop_grace_period} (15 s) with the default drain (10 s).
"""


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpuQuota(root: Path = CGROUP_ROOT) -> float | None:
    """
    How many CPUs' worth of time this process's container may use, from the
    CFS quota its cgroup sets (C{docker run --cpus}, compose's C{cpus},
    swarm's C{limits.cpus}), or L{None} if none is set.

    Read where a container sees its own cgroup: C{cpu.max} at the root of
    cgroup v2, C{cpu.cfs_quota_us} over C{cpu.cfs_period_us} in v1's cpu
    controller.  A process outside a container sees the root cgroup's,
    which has none.
    """
    candidates = []
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            candidates.append(int(quota) / int(period))
    except (OSError, ValueError):
        pass
    for controller in ("cpu", "cpu,cpuacct"):
        try:
            quota = int((root / controller / "cpu.cfs_quota_us").read_text())
            period = int((root / controller / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            candidates.append(quota / period)
    return min(candidates) if candidates else None


def cpuCount(root: Path = CGROUP_ROOT) -> int:
    """
    The CPUs this process may use: its affinity mask (which a container's
    C{cpuset} narrows), and no more than its CFS quota allows, rounded up
    (L{cpuQuota}: a container given C{cpus: 2} on an 8-core host counts 2).
    """
    try:
        count = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cpuQuota(root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return count


def workerWrapper(environ: Mapping[str, str]) -> tuple[str, ...]:
    """
    The command named by L{WRAPPER_ENV} in C{environ}, split as a shell
    splits words (none if unset or empty); exits 2 with the reason if it
    cannot be split, like the other settings.
    """
    given = environ.get(WRAPPER_ENV, "")
    try:
        return tuple(shlex.split(given))
    except ValueError as e:
        sys.stderr.write(f"environment: {WRAPPER_ENV} = {given!r} is invalid: {e}\n")
        raise SystemExit(2)


def workerCount(configured: int) -> int:
    """
    How many processes C{workers = configured} means: 0 is one per CPU this
    process may use (L{cpuCount}).
    """
    return configured if configured > 0 else cpuCount()


class RestartBackoff:
    """
    When to restart a worker that died: at once-ish the first time, then
    twice as long after each death, up to C{maximum}; a worker that ran for
    C{stableAfter} seconds or more is forgiven its past deaths.

    A worker that dies as soon as it starts (a bad deployment, a crash on
    its first request) is so restarted at most once every C{maximum}
    seconds, rather than in a loop that would fill the logs and hold a core.

    @param clock: an L{IReactorTime}, a L{twisted.internet.task.Clock} in
        tests.
    """

    def __init__(
        self,
        clock,
        initial: float = 0.1,
        maximum: float = 30.0,
        stableAfter: float = 10.0,
    ) -> None:
        self._clock = clock
        self._initial = initial
        self._maximum = maximum
        self._stableAfter = stableAfter
        self._startedAt: dict[int, float] = {}
        self._failures: dict[int, int] = {}

    def started(self, index: int) -> None:
        """
        Worker C{index} was (re)started now.
        """
        self._startedAt[index] = self._clock.seconds()

    def delayAfterExit(self, index: int) -> float:
        """
        Worker C{index} died now: seconds to wait before starting it again.
        """
        ran = self._clock.seconds() - self._startedAt.get(index, self._clock.seconds())
        failures = 0 if ran >= self._stableAfter else self._failures.get(index, 0)
        # Bounded, so that days of a crash loop never overflow a float.
        self._failures[index] = min(failures + 1, 64)
        return min(self._maximum, self._initial * (2**failures))


class _NoAccept(ServerFactory):
    """
    The parent's factory: it never reads the socket, so this builds nothing;
    were a connection ever accepted here it would be closed at once.
    """

    noisy = False

    def logPrefix(self) -> str:
        return "workers' socket"

    def buildProtocol(self, addr):
        return None


@dataclass(frozen=True)
class WorkerCommand:
    """
    How to start a worker of one service: the same Python, the module below,
    the service's module and settings file, the parent's log observer.

    @ivar environ: the workers' environment, besides the metrics directory.
    """

    moduleName: str
    tapname: str
    configFile: str
    logger: str | None
    environ: Mapping[str, str]
    executable: str = sys.executable
    reactor: str | None = None
    """
    The short name of the parent's reactor (twistd's C{--reactor}), for
    the workers to run on the same one.
    """
    wrapper: tuple[str, ...] = ()
    """
    A command each worker runs under, its own arguments first (from
    L{WRAPPER_ENV}): a profiler such as callgrind for the workers alone,
    the parent left to run at full speed.
    """

    def __call__(
        self, index: int, family: int, metricsDir: str
    ) -> tuple[str, list[str], dict[str, str]]:
        """
        The executable, arguments and environment of worker C{index}.
        """
        args = [
            self.executable,
            "-m",
            WORKER_MODULE,
            "--module",
            self.moduleName,
            "--tapname",
            self.tapname,
            "--config",
            self.configFile,
            "--index",
            str(index),
            "--family",
            str(family),
        ]
        if self.logger:
            args += ["--logger", self.logger]
        if self.reactor:
            args += ["--reactor", self.reactor]
        env = dict(self.environ)
        env[MULTIPROC_ENV] = metricsDir
        # The worker imports webstack the way this process did, whether from
        # an installed package or from PYTHONPATH.
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if here not in paths:
            env["PYTHONPATH"] = os.pathsep.join([here, *paths])
        if self.wrapper:
            args = [*self.wrapper, *args]
            return self.wrapper[0], args, env
        return self.executable, args, env


class WorkerProtocol(ProcessProtocol):
    """
    The parent's end of one worker.  The worker's stdout and stderr are the
    parent's own (its JSON lines go straight to the same log, unread here);
    its stdin is a pipe that the parent never writes to, so that the worker
    sees end-of-file, and stops, if the parent dies without stopping it.
    """

    def __init__(self, parent: "WorkerParent", index: int) -> None:
        self._parent = parent
        self.index = index
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid

    def processEnded(self, reason) -> None:
        self._parent._workerEnded(self, reason)


class WorkerParent(Service):
    """
    Hold the listening socket, keep C{count} workers serving it, stop them
    all gracefully.  See the module's docstring.

    @ivar workers: the live workers by index (1 to C{count}).
    @ivar port: the parent's listening port, not accepting.
    """

    log = Logger()

    def __init__(
        self,
        *,
        name: str,
        reactor,
        endpoint,
        count: int,
        command: Callable[[int, int, str], tuple[str, list[str], dict[str, str]]],
        drainTimeout: float,
        backoff: RestartBackoff | None = None,
        makeMetricsDir: Callable[[], str] | None = None,
        handleSigterm: bool = False,
    ) -> None:
        self.setName(name)
        self._reactor = reactor
        self._endpoint = endpoint
        self.count = count
        self._command = command
        self._drainTimeout = drainTimeout
        self._backoff = backoff or RestartBackoff(reactor)
        self._makeMetricsDir = makeMetricsDir or (
            lambda: tempfile.mkdtemp(prefix=f"{name}-metrics-")
        )
        self._handleSigterm = handleSigterm
        self.port = None
        self.metricsDir: str | None = None
        self.workers: dict[int, WorkerProtocol] = {}
        self._restarts: dict[int, Any] = {}
        self._stopping = False
        self._allEnded: Deferred[None] | None = None
        self._killer = None

    def privilegedStartService(self) -> None:
        d = self._endpoint.listen(_NoAccept())
        failures: list = []
        d.addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0]
            if reason.check(CannotListenError):
                sys.stderr.write(f"{self.name}: cannot listen: {reason.value}\n")
                raise SystemExit(1)
            reason.raiseException()
        super().privilegedStartService()

    def _listening(self, port) -> None:
        # Workers accept; this process only keeps the socket open.
        port.stopReading()
        self.port = port
        self.metricsDir = self._makeMetricsDir()
        address = port.getHost()
        self.log.info(
            "{service} listening on {host}:{port} with {workers} workers",
            event="listening",
            service=self.name,
            host=getattr(address, "host", "-"),
            port=getattr(address, "port", 0),
            workers=self.count,
            metrics_dir=self.metricsDir,
        )

    def startService(self) -> None:
        super().startService()
        for index in range(1, self.count + 1):
            self._spawn(index)
        if self._handleSigterm:
            handleSigterm(self._reactor)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self._stopping:
            return
        executable, args, env = self._command(
            index, self.port.socket.family, self.metricsDir
        )
        protocol = WorkerProtocol(self, index)
        self._backoff.started(index)
        try:
            self._reactor.spawnProcess(
                protocol,
                executable,
                args,
                env=env,
                childFDs={0: "w", 1: 1, 2: 2, LISTEN_FD: self.port.fileno()},
            )
        except OSError as e:
            # Out of processes or descriptors, say: try again later, like
            # a worker that died at once.
            delay = self._backoff.delayAfterExit(index)
            self.log.error(
                "{service} cannot start worker {worker}: {error}; retrying in {delay:.1f}s",
                event="worker_failed",
                service=self.name,
                worker=index,
                error=str(e),
                delay=delay,
            )
            self._restarts[index] = self._reactor.callLater(delay, self._spawn, index)
            return
        self.workers[index] = protocol
        self.log.info(
            "{service} worker {worker} started (pid {pid})",
            event="worker_started",
            service=self.name,
            worker=index,
            pid=protocol.pid,
        )

    def _workerEnded(self, protocol: WorkerProtocol, reason) -> None:
        index = protocol.index
        if self.workers.get(index) is protocol:
            del self.workers[index]
        self._forget(protocol.pid)
        status = getattr(reason.value, "exitCode", None)
        killedBy = getattr(reason.value, "signal", None)
        if self._stopping:
            self.log.info(
                "{service} worker {worker} stopped (pid {pid}, exit status {status})",
                event="worker_stopped",
                service=self.name,
                worker=index,
                pid=protocol.pid,
                status=status,
                signal=killedBy,
            )
            if not self.workers and self._allEnded is not None:
                allEnded, self._allEnded = self._allEnded, None
                allEnded.callback(None)
            return
        delay = self._backoff.delayAfterExit(index)
        self.log.warn(
            "{service} worker {worker} died (pid {pid}, exit status {status},"
            " signal {signal}); restarting in {delay:.1f}s",
            event="worker_died",
            service=self.name,
            worker=index,
            pid=protocol.pid,
            status=status,
            signal=killedBy,
            delay=delay,
        )
        self._restarts[index] = self._reactor.callLater(delay, self._spawn, index)

    def _forget(self, pid: int | None) -> None:
        """
        Drop a dead worker's live gauges (its in-flight requests, its open
        connections): they ended with it.  Its counters stay, and keep
        counting in the sums.
        """
        if pid is None or self.metricsDir is None:
            return
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(pid, self.metricsDir)
        except OSError:
            pass

    def stopService(self) -> Deferred[None]:
        """
        Close the parent's socket, then stop the workers; fire once every one
        has exited.
        """
        super().stopService()
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        self.log.info(
            "{service} stopping {count} worker(s)",
            event="draining",
            service=self.name,
            count=len(self.workers),
        )
        # First: were it left open after the workers closed theirs, the
        # kernel would go on queueing connections that nobody accepts.
        d = maybeDeferred(self.port.stopListening) if self.port else succeed(None)
        d.addCallback(lambda _: self._stopWorkers())
        d.addCallback(self._stopped)
        return d

    def _stopWorkers(self) -> Deferred[None]:
        if not self.workers:
            return succeed(None)
        self._allEnded = Deferred()
        for protocol in list(self.workers.values()):
            _signal(protocol, "TERM")
        self._killer = self._reactor.callLater(
            self._drainTimeout + KILL_MARGIN, self._killTheRest
        )

        def ended(result):
            if self._killer is not None and self._killer.active():
                self._killer.cancel()
            return result

        return self._allEnded.addBoth(ended)

    def _killTheRest(self) -> None:
        for protocol in list(self.workers.values()):
            self.log.warn(
                "{service} worker {worker} still running after {seconds}s: killing it",
                event="worker_killed",
                service=self.name,
                worker=protocol.index,
                pid=protocol.pid,
                seconds=self._drainTimeout + KILL_MARGIN,
            )
            _signal(protocol, "KILL")

    def _stopped(self, _) -> None:
        if self.metricsDir is not None:
            shutil.rmtree(self.metricsDir, ignore_errors=True)
        self.log.info("{service} stopped", event="stopped", service=self.name)


def _signal(protocol: WorkerProtocol, name: str) -> None:
    try:
        protocol.transport.signalProcess(name)
    except ProcessExitedAlready:
        pass


# The worker's side.


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """
    "Listen" on a socket that is already listening (the parent's, inherited
    as descriptor C{fd}): adopt it.
    """

    def __init__(self, reactor, fd: int, family: int) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family

    def listen(self, factory) -> Deferred:
        port = self._reactor.adoptStreamPort(self._fd, self._family, factory)
        # The port holds its own duplicate.  The inherited descriptor must
        # go, or the socket would outlive stopListening in this process and
        # the kernel would queue connections to a worker that is draining.
        os.close(self._fd)
        return succeed(port)


def workerRequestFactory(base: type, value: bytes) -> type:
    """
    A subclass of the request class C{base} whose responses say which worker
    answered (C{X-Worker}).  Added when the head is written, to the headers
    this side adds, so that a proxied response (whose head is the
    upstream's, L{webstack.runtime.site.ObservedRequest.forwardHead})
    carries it too; a backend's own C{X-Worker} stays beside it.
    """

    class WorkerRequest(base):
        def write(self, data):
            if not self.startedWriting:
                self.responseHeaders.addRawHeader(WORKER_HEADER, value)
            super().write(data)

    WorkerRequest.__name__ = WorkerRequest.__qualname__ = f"Worker{base.__name__}"
    return WorkerRequest


class WorkerLogObserver:
    """
    Add C{"worker": index} to every event before the real observer writes
    it, so that interleaved lines say which worker wrote them.
    """

    def __init__(self, observer, index: int) -> None:
        self._observer = observer
        self._index = index

    def __call__(self, event: dict) -> None:
        addField(event, "worker", self._index)
        self._observer(event)


@implementer(IReadDescriptor)
class _ParentWatch:
    """
    Watch stdin, a pipe from the parent that it never writes to: end of
    file means the parent is gone (killed with SIGKILL), and so, after a
    drain, is this worker; it would otherwise serve on, unsupervised.
    """

    def __init__(self, reactor, lost: Callable[[], None], fd: int = 0) -> None:
        self._reactor = reactor
        self._fd = fd
        self._lost = lost
        self._told = False

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "parent-watch"

    def doRead(self):
        if self._parentGone():
            from twisted.internet.main import CONNECTION_DONE

            return CONNECTION_DONE
        return None

    def connectionLost(self, reason) -> None:
        # The reactor calls this for a hang-up, and also for every reader
        # when it stops: only the first is the parent's end.
        self._parentGone()

    def _parentGone(self) -> bool:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            return False
        if not self._told:
            self._told = True
            self._lost()
        return True


def runWorker(argv: list[str] | None = None) -> int:
    """
    One worker: read the settings as the parent did, log as it does, build
    the service on the inherited socket, run until SIGTERM (or the parent's
    end), drain, exit 0.  A bad setting (the file changed since the parent
    read it) exits 2 with one line, like twistd.
    """
    parser = argparse.ArgumentParser(prog=WORKER_MODULE)
    parser.add_argument("--module", required=True)
    parser.add_argument("--tapname", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--family", type=int, default=socket.AF_INET)
    parser.add_argument("--fd", type=int, default=LISTEN_FD)
    parser.add_argument("--logger")
    parser.add_argument("--reactor")
    args = parser.parse_args(argv)
    if args.reactor:
        # Before anything imports twisted.internet.reactor, as twistd does.
        from twisted.application.reactors import installReactor

        installReactor(args.reactor)

    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.python.reflect import namedAny

    from .plugin import ServiceOptions, buildService

    options = ServiceOptions(args.module, args.tapname)
    options.parseOptions(["--config", args.config])

    observer = namedAny(args.logger)() if args.logger else textFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([WorkerLogObserver(observer, args.index)])

    from twisted.internet import fdesc, reactor

    service = buildService(
        options.module,
        options.runtime,
        options.settings,
        reactor,
        options.configDir,
        endpoint=AdoptedEndpoint(reactor, args.fd, args.family),
        metricsDir=os.environ.get(MULTIPROC_ENV) or None,
        workerId=f"{options.module.SECTION}/{args.index}/{os.getpid()}".encode("ascii"),
    )
    service.privilegedStartService()
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # The parent alone answers Ctrl-C (SIGINT reaches the whole process
    # group): it stops the workers with SIGTERM, in order.
    reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)

    def parentGone() -> None:
        service.log.warn(
            "{service} worker {worker}: the parent is gone; stopping",
            event="parent_gone",
            service=service.name,
            worker=args.index,
        )
        stopReactor(reactor)

    fdesc.setNonBlocking(0)
    reactor.callWhenRunning(reactor.addReader, _ParentWatch(reactor, parentGone))
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(runWorker())
