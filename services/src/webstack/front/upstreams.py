# -*- test-case-name: tests.test_front_units -*-
"""
The replicas behind one upstream name, and which one gets the next request.

An upstream is a list of C{host:port} targets.  A target whose host is a name
is resolved to I{all} its addresses (a compose service scaled to three is one
name with three addresses), again every C{resolve_interval} seconds, so
replicas that come and go are picked up without restarting the front.

Balancing sends each request to the available replica with the fewest
requests in flight (delayed responses make in-flight count, not request rate,
the load), rotating among equals, unless one is much slower than the others:
each replica keeps a "peak EWMA" of its time to a response head (Finagle's
and Linkerd's estimate: a slower answer replaces it at once, a faster one is
averaged in, and it decays as time passes), and a replica whose estimate is
k times twice the fastest's counts as k times its requests in flight plus
one.  So a replica turning slow is sent almost nothing at once, is tried
again once its estimate has decayed, and comes back when it is fast again;
replicas within twice each other's speed are balanced as before.  A replica
is unavailable while it is
ejected (it refused or did not accept a connection: left out for
C{eject_seconds}) or while its last C{/readyz} probe failed.  When no replica
is available the front answers 502 at once instead of waiting on a dead one;
the route recovers when an ejection ends, a probe passes or the name resolves
to new addresses, whichever comes first.

A name that resolves to no address at all (a compose service whose every
container is gone) leaves its upstream with no replica; a lookup that fails
outright keeps the replicas known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import exp

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger
from zope.interface import implementer


LATENCY_DECAY = 5.0
"""
Seconds over which a replica's latency estimate decays by a factor of e
without a new answer: a replica found slow is tried again after a few
seconds (its estimate falling to the others'), and so comes back once it is
fast again.
"""
LATENCY_FLOOR = 0.005
"""
Added to every estimate: differences of a few milliseconds (a new
connection, a busy moment) are noise, not a slower replica.
"""


class Replica:
    """
    One address of an upstream, and what the front knows about it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.inFlight = 0
        self.ejectedUntil = 0.0
        self.probeOK: bool | None = None  # None: not probed yet
        self.lastError = ""
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.baseURL = b"http://" + self.address.encode("ascii")

    # The latency estimate (seconds) and when it was last brought up to date.
    latency = 0.0
    _latencyAt = 0.0

    def available(self, now: float) -> bool:
        return now >= self.ejectedUntil and self.probeOK is not False

    def _decayed(self, now: float) -> float:
        return self.latency * exp(-max(0.0, now - self._latencyAt) / LATENCY_DECAY)

    def observeLatency(self, seconds: float, now: float) -> None:
        """
        A response head came C{seconds} after its request was sent: a
        slower answer than the estimate replaces it (the peak), a faster one
        is averaged in.
        """
        weight = exp(-max(0.0, now - self._latencyAt) / LATENCY_DECAY)
        decayed = self.latency * weight  # _decayed(now), the weight made once
        if seconds >= decayed:
            self.latency = seconds
        else:
            self.latency = decayed * weight + seconds * (1.0 - weight)
        self._latencyAt = now

    def estimate(self, now: float) -> float:
        """
        Its latency estimate now, decayed since the last answer, plus
        L{LATENCY_FLOOR}.
        """
        return self._decayed(now) + LATENCY_FLOOR

    def __repr__(self) -> str:
        return f"<Replica {self.address} in_flight={self.inFlight}>"


@implementer(IResolutionReceiver)
class _Addresses:
    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.done: Deferred[list[str]] = Deferred()

    def resolutionBegan(self, resolution) -> None:
        pass

    def addressResolved(self, address) -> None:
        if address.host not in self.hosts:
            self.hosts.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.hosts)


def resolveAll(reactor, host: str, port: int) -> Deferred[list[str]]:
    """
    Every address C{host} resolves to (one, if it is an address already).
    """
    if isIPAddress(host) or isIPv6Address(host):
        return succeed([host])
    receiver = _Addresses()
    reactor.nameResolver.resolveHostName(receiver, host, port)
    return receiver.done


class ReplicaSet:
    """
    The replicas of one upstream, resolved from its targets.
    """

    log = Logger()

    def __init__(
        self,
        name: str,
        targets: Iterable[tuple[str, int]],
        reactor,
        ejectSeconds: float,
    ) -> None:
        self.name = name
        self.targets = list(targets)
        self._reactor = reactor
        self._ejectSeconds = ejectSeconds
        self.replicas: list[Replica] = []
        self._turn = 0
        self.resolved = False
        self.newReplica = None
        """
        Called with each replica that appears after the first lookup (the
        front probes it at once), or L{None}.
        """
        if all(isIPAddress(h) or isIPv6Address(h) for h, _ in self.targets):
            self._update([(h, p) for h, p in self.targets])

    @property
    def configured(self) -> bool:
        return bool(self.targets)

    def refresh(self) -> Deferred[None]:
        """
        Resolve every target again and update the replicas, keeping what is
        known of the ones that remain.  A failed lookup keeps the old list.
        """
        if not self.targets:
            return succeed(None)
        lookups = [resolveAll(self._reactor, h, p) for h, p in self.targets]

        def resolved(results):
            found = []
            for (host, port), (ok, hosts) in zip(self.targets, results):
                if not ok:
                    self.log.warn(
                        "upstream {upstream}: {host} did not resolve; keeping"
                        " {count} known replica(s)",
                        event="resolve_failed",
                        upstream=self.name,
                        host=host,
                        count=len(self.replicas),
                    )
                    return
                found.extend((h, port) for h in hosts)
            self._update(found)

        return DeferredList(lookups, consumeErrors=True).addCallback(resolved)

    def _update(self, found: list[tuple[str, int]]) -> None:
        known = {(r.host, r.port): r for r in self.replicas}
        replicas = []
        appeared = []
        for pair in dict.fromkeys(found):
            replica = known.get(pair)
            if replica is None:
                replica = Replica(*pair)
                if self.resolved:
                    # A replica that appears later (a scaled or restarted
                    # container) is sent nothing until its first probe
                    # passes, a second at most after it listens (the
                    # unhealthy interval): a container is in the engine's
                    # DNS before its service listens, and a request refused
                    # there would eject it for eject_seconds.  Those known
                    # at start are tried at once.
                    replica.probeOK = False
                    replica.lastError = "new: waiting for its first probe"
                    appeared.append(replica)
            replicas.append(replica)
        # The resolver's order changes from one lookup to the next (DNS round
        # robin): only a replica added or gone is news.
        if {(r.host, r.port) for r in replicas} != {(r.host, r.port) for r in self.replicas}:
            self.log.info(
                "upstream {upstream}: replicas {replicas}",
                event="replicas",
                upstream=self.name,
                replicas=", ".join(r.address for r in replicas) or "none",
            )
        self.replicas = replicas
        self.resolved = True
        if self.newReplica is not None:
            for replica in appeared:
                self.newReplica(replica)

    def pick(self, exclude: Sequence[Replica] = ()) -> Replica | None:
        """
        The replica for the next request: the available one of lowest
        L{Replica.cost}, rotating among equals; L{None} if none is available
        (or none but those in C{exclude}).
        """
        replicas = self.replicas
        count = len(replicas)
        if not count:
            return None
        now = self._reactor.seconds()
        if count == 1:
            # A route of one replica, the commonest: nothing to rotate or
            # weigh.
            replica = replicas[0]
            if (
                replica.ejectedUntil > now
                or replica.probeOK is False
                or (exclude and replica in exclude)
            ):
                return None
            return replica
        self._turn = turn = (self._turn + 1) % count
        available = []
        for i in range(count):
            replica = replicas[(turn + i) % count]
            if (
                replica.ejectedUntil > now
                or replica.probeOK is False
                or (exclude and replica in exclude)
            ):
                continue
            available.append(replica)
        if len(available) < 2:
            # None, or the one: no estimate to weigh (a route of one
            # replica, the commonest, skips the arithmetic below).
            return available[0] if available else None
        candidates = [(replica, replica.estimate(now)) for replica in available]
        # Within twice the fastest's estimate is as fast: those are told
        # apart by requests in flight alone, rotating among equals.
        reference = 2.0 * min(estimate for _, estimate in candidates)
        best = None
        bestCost = 0.0
        for replica, estimate in candidates:
            cost = (replica.inFlight + 1) * max(1.0, estimate / reference)
            if best is None or cost < bestCost:
                best, bestCost = replica, cost
        return best

    def availableReplicas(self, exclude: Sequence[Replica] = ()) -> list[Replica]:
        """
        The replicas that may be sent a request now, but those in
        C{exclude}.
        """
        now = self._reactor.seconds()
        return [r for r in self.replicas if r.available(now) and r not in exclude]

    def eject(self, replica: Replica, reason: str) -> None:
        """
        Leave C{replica} out for C{ejectSeconds}.
        """
        replica.ejectedUntil = self._reactor.seconds() + self._ejectSeconds
        replica.lastError = reason
        self.log.warn(
            "upstream {upstream}: replica {replica} ejected for {seconds:g}s: {reason}",
            event="ejected",
            upstream=self.name,
            replica=replica.address,
            seconds=self._ejectSeconds,
            reason=reason,
        )

    def status(self) -> dict[str, object]:
        """
        What the landing page and C{/-/readyz} show.
        """
        now = self._reactor.seconds()
        replicas = [
            {
                "address": r.address,
                "available": r.available(now),
                "in_flight": r.inFlight,
                "probe": {None: "pending", True: "ok", False: "failed"}[r.probeOK],
                "ejected_for": round(max(0.0, r.ejectedUntil - now), 1),
                "last_error": r.lastError or None,
            }
            for r in self.replicas
        ]
        return {
            "replicas": replicas,
            "available": sum(1 for r in replicas if r["available"]),
        }


class ReplicaChooser:
    """
    Which replica of one route serves a request: the least busy available
    one (L{ReplicaSet.pick}), or, on a sticky route, the one the client's
    routing cookie names (L{webstack.front.affinity.RouteCookie}) while it
    is available, with the C{Set-Cookie} that sends the client back to the
    one chosen.

    @ivar replicas: the route's L{ReplicaSet}.
    @ivar cookie: the route's L{RouteCookie}, or L{None} if it is not sticky.
    """

    def __init__(self, replicas: ReplicaSet, cookie=None, trustForwarded: bool = False) -> None:
        self.replicas = replicas
        self.cookie = cookie
        self._trustForwarded = trustForwarded

    def takeCookies(self, headers) -> tuple[bytes, ...]:
        """
        Take the routing cookie out of a request's headers (the service is
        not sent it: HAProxy's C{indirect}) and return the C{Cookie}
        headers as the client sent them, for L{choose}.
        """
        if self.cookie is None or not headers.hasHeader(b"cookie"):
            return ()
        sent = tuple(headers.getRawHeaders(b"cookie"))
        kept = self.cookie.strip(sent)
        if kept:
            headers.setRawHeaders(b"cookie", kept)
        else:
            headers.removeHeader(b"cookie")
        return sent

    def choose(
        self, request, cookies: tuple[bytes, ...], tried: Sequence[Replica]
    ) -> tuple[Replica | None, bytes | None]:
        """
        The replica for C{request}, none of C{tried}, and the C{Set-Cookie}
        value its response must carry (L{None}: none).

        @param cookies: what L{takeCookies} returned for C{request}.
        @return: C{(None, None)} when no replica is available.
        """
        cookie = self.cookie
        if cookie is None:
            return self.replicas.pick(exclude=tried), None
        replica = None
        if cookies:
            replica = cookie.choose(cookies, self.replicas.availableReplicas(tried))
        if replica is None:
            replica = self.replicas.pick(exclude=tried)
        if replica is None or not cookie.needsSetting(cookies, replica.address):
            return replica, None
        return replica, cookie.setCookie(replica.address, self._reachedOverHTTPS(request))

    def _reachedOverHTTPS(self, request) -> bool:
        """
        Whether the client came over HTTPS (as a trusted proxy in front
        says, when there is one): the routing cookie is then C{Secure}.
        """
        if request.isSecure():
            return True
        if self._trustForwarded:
            proto = request.requestHeaders.getRawHeaders(b"x-forwarded-proto", [b""])
            return proto[0].strip().lower() == b"https"
        return False
