# -*- test-case-name: tests.test_config,tests.test_front_integration -*-
"""
What runs one webstack service: its runtime settings, the listening endpoint
(with an explicit backlog: Twisted's default of 50 drops connections under a
burst), and a graceful stop that drains in-flight requests.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import Logger

from .config import ConfigError, setting
from .health import Health
from .site import WebSite
from .writes import coalesceWrites


@dataclass(frozen=True)
class RuntimeSettings:
    """
    The settings every service has.  They are read from C{[runtime]}, then
    from the service's own table, so one service can differ from the rest.
    """

    listen: str = setting(
        "tcp:8080:interface=127.0.0.1",
        help="endpoint description to listen on (twisted strports syntax)",
    )
    backlog: int = setting(1024, minimum=1, maximum=65535, help="listen backlog")
    idle_timeout: float = setting(
        60.0, minimum=1, maximum=3600, help="close a connection idle this long (s)"
    )
    head_timeout: float = setting(
        10.0, minimum=0.1, maximum=300, help="a request head must arrive within (s)"
    )
    body_timeout: float = setting(
        60.0, minimum=0.1, maximum=3600, help="a request body must arrive within (s)"
    )
    max_header_bytes: int = setting(
        16384, minimum=1024, maximum=1 << 20, help="largest request head (bytes)"
    )
    max_headers: int = setting(
        100, minimum=1, maximum=1000, help="most header fields in a request"
    )
    max_body_bytes: int = setting(
        1 << 20, minimum=0, maximum=1 << 30, help="largest request body (bytes)"
    )
    write_timeout: float = setting(
        60.0,
        minimum=0,
        maximum=3600,
        help="abort a response the client reads nothing of this long (s; 0: never)",
    )
    max_connections: int = setting(
        10000,
        minimum=1,
        maximum=1000000,
        help="client connections open at once; more are closed as accepted",
    )
    drain_timeout: float = setting(
        10.0, minimum=0, maximum=600, help="on SIGTERM, wait this long for requests (s)"
    )
    workers: int = setting(
        1,
        minimum=0,
        maximum=256,
        help="processes accepting on the one listening socket (0: one per CPU;"
        " see webstack.runtime.workers)",
    )


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

    Stopping stops accepting, marks the service not ready, closes idle
    keep-alive connections, lets requests in progress finish for up to
    C{drainTimeout} seconds, aborts whatever is left, then stops the child
    services and runs C{stopHooks}.  The reactor waits for all of it.

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
        )

    def stopService(self) -> Deferred[None]:
        self.health.draining = True
        self.log.info(
            "{service} draining: not accepting; {connections} connection(s) open",
            event="draining",
            service=self.name,
            connections=len(self.site.channels),
        )
        d = maybeDeferred(self.port.stopListening) if self.port else succeed(None)
        d.addCallback(lambda _: self._drain())
        d.addCallback(lambda _: super(WebService, self).stopService())
        for hook in self._stopHooks:
            d.addCallback(lambda _, hook=hook: hook())
        d.addCallback(self._stopped)
        return d

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
