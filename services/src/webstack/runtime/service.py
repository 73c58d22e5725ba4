# -*- test-case-name: tests.test_config,tests.test_front_integration -*-
"""
What runs one webstack service: the listening endpoint (with an explicit
backlog: Twisted's default of 50 drops connections under a burst), and a
graceful stop that drains in-flight requests.  Its settings are
L{webstack.runtime.settings.RuntimeSettings}.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import Logger
from twisted.python.reflect import qual

from .config import ConfigError
from .health import Health
from .site import WebSite
from .writes import coalesceWrites


def listeningEndpoint(reactor, description: str, backlog: int):
    """
    Parse C{description}, adding C{backlog=} to a TCP one that has none.

    @raise ConfigError: if the description cannot be parsed.
    """
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6") and "backlog=" not in description:
        description = f"{description}:backlog={backlog}"
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"listen = {description!r} is not a valid endpoint description: {e}"
        ) from None


def stopReactor(reactor) -> None:
    """
    Stop C{reactor} unless it is stopping already: a second signal during a
    drain must change nothing (C{reactor.stop} would raise).
    """
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def handleSigterm(reactor) -> None:
    """
    Make SIGTERM stop C{reactor}, and so drain, with exit status 0.

    twistd's own SIGTERM handler would stop it too but then kill the process
    with the signal again, for an exit status of 143; a graceful drain is
    the normal way for a service to end.  Installed once the reactor runs,
    after its own handlers, to replace its SIGTERM one; only from the main
    thread (tests run services in others).
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def onSigterm(signum, frame) -> None:
        reactor.callFromThread(stopReactor, reactor)

    reactor.callWhenRunning(signal.signal, signal.SIGTERM, onSigterm)


class WebService(MultiService):
    """
    Serve C{site} on C{endpoint}; on stop, drain.

    Stopping marks the service not ready, calls C{drainHooks} (for the
    children whose own stop is bounded by the same deadline as the drain),
    stops accepting, closes idle keep-alive connections, lets requests in
    progress finish for up to C{drainTimeout} seconds, aborts whatever is
    left, then stops the child services and runs C{stopHooks}.  The reactor
    waits for all of it.

    SIGTERM (what C{docker stop} and C{make run} send) stops the reactor and
    so this service.  twistd's own SIGTERM handler would do the same but then
    kill the process with the signal again, for an exit status of 143; a
    graceful drain is the normal way for this service to end, so with
    C{handleSigterm} it is handled here and the process exits 0.
    """

    log = Logger()

    def __init__(
        self,
        *,
        name: str,
        reactor,
        endpoint,
        site: WebSite,
        health: Health,
        drainTimeout: float,
        children: Sequence[IService] = (),
        drainHooks: Sequence[Callable[[], object]] = (),
        stopHooks: Sequence[Callable[[], Deferred | None]] = (),
        handleSigterm: bool = False,
    ) -> None:
        super().__init__()
        self._handleSigterm = handleSigterm
        self.setName(name)
        self._reactor = reactor
        self._endpoint = endpoint
        self.site = site
        self.health = health
        self._drainTimeout = drainTimeout
        self._drainHooks = list(drainHooks)
        self._stopHooks = list(stopHooks)
        self.port = None
        for child in children:
            child.setServiceParent(self)

    def privilegedStartService(self) -> None:
        d = self._endpoint.listen(self.site)
        failures = []
        d.addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0]
            if reason.check(CannotListenError):
                sys.stderr.write(f"{self.name}: cannot listen: {reason.value}\n")
                raise SystemExit(1)
            reason.raiseException()
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        if self._handleSigterm:
            handleSigterm(self._reactor)

    def _listening(self, port) -> None:
        self.port = port
        coalesceWrites(port)
        address = port.getHost()
        self.log.info(
            "{service} listening on {host}:{port}",
            event="listening",
            service=self.name,
            host=getattr(address, "host", "-"),
            port=getattr(address, "port", 0),
            reactor=qual(type(self._reactor)),
        )

    def stopService(self) -> Deferred[None]:
        self.health.draining = True
        self.log.info(
            "{service} draining: not accepting; {connections} connection(s) open",
            event="draining",
            service=self.name,
            connections=len(self.site.channels),
        )
        self._drainBegins()
        d = maybeDeferred(self.port.stopListening) if self.port else succeed(None)
        d.addCallback(lambda _: self._drain())
        d.addCallback(lambda _: super(WebService, self).stopService())
        for hook in self._stopHooks:
            d.addCallback(lambda _, hook=hook: hook())
        d.addCallback(self._stopped)
        return d

    def _drainBegins(self) -> None:
        """
        Call each of C{drainHooks}; one that fails is logged, and neither
        the others nor the drain are held up by it.
        """
        for hook in self._drainHooks:
            try:
                hook()
            except Exception:
                self.log.failure(
                    "{service} drain hook {hook!r} failed",
                    event="drain_hook_failed",
                    service=self.name,
                    hook=hook,
                )

    def _drain(self) -> Deferred[None]:
        for channel in list(self.site.channels):
            channel.closeWhenIdle()
        emptied = self.site.whenEmpty()
        if emptied.called:
            return emptied

        def abortTheRest():
            left = list(self.site.channels)
            self.log.warn(
                "{service} drain timeout: aborting {count} connection(s)",
                event="drain_timeout",
                service=self.name,
                count=len(left),
            )
            for channel in left:
                if channel.transport is not None:
                    channel.transport.abortConnection()

        timer = self._reactor.callLater(self._drainTimeout, abortTheRest)

        def drained(result):
            if timer.active():
                timer.cancel()
            return result

        return emptied.addBoth(drained)

    def _stopped(self, _) -> None:
        self.log.info("{service} stopped", event="stopped", service=self.name)
