# -*- test-case-name: tests.test_front_units -*-
"""
Active health checks: every C{health_interval} seconds, each replica's
C{/readyz} is asked through the front's own pool.  A replica whose probe
fails (an error, a timeout, anything but 200, e.g. 503 while it drains) is
not sent new requests until a probe passes again.
"""

from __future__ import annotations

from twisted.internet.defer import DeferredList, TimeoutError, succeed
from twisted.logger import Logger

from .client import UpstreamPool, fetchStatus
from .failures import UpstreamFailure, describeFailure

log = Logger()


def probeReplica(pool: UpstreamPool, reactor, replicaSet, replica, timeout: float):
    d = fetchStatus(pool, replica.host, replica.port, b"/readyz", b"webstack-front-probe")
    d.addTimeout(timeout, reactor)

    def concluded(ok):
        if ok is not True:
            if ok is False:
                reason = "not ready (status other than 200)"
            elif ok.check(TimeoutError):
                reason = f"no answer within {timeout:g}s"
            elif ok.check(UpstreamFailure):
                reason = str(ok.value)
            else:
                reason = describeFailure(ok)
            if replica.probeOK is not False:
                log.warn(
                    "upstream {upstream}: replica {replica} failed its probe: {reason}",
                    event="probe_failed",
                    upstream=replicaSet.name,
                    replica=replica.address,
                    reason=reason,
                )
            replica.lastError = f"probe: {reason}"
        elif replica.probeOK is False:
            log.info(
                "upstream {upstream}: replica {replica} passes its probe again",
                event="probe_ok",
                upstream=replicaSet.name,
                replica=replica.address,
            )
        replica.probeOK = ok is True

    return d.addCallback(lambda code: code == 200).addBoth(concluded)


def probeAll(
    pool: UpstreamPool, reactor, replicaSets, timeout: float, failingOnly: bool = False
):
    """
    Probe every replica of every route, or, with C{failingOnly}, only those
    whose last probe failed: a replica that failed once (not listening yet
    when it was first resolved, or draining before a restart) is asked again
    every C{unhealthy_interval} rather than every C{health_interval}, so it
    is back in rotation within a second of being ready (Envoy's
    C{unhealthy_interval}); otherwise a rolling restart of two replicas could
    find both out at once.
    """
    probes = [
        probeReplica(pool, reactor, replicaSet, replica, timeout)
        for replicaSet in replicaSets.values()
        for replica in list(replicaSet.replicas)
        if not failingOnly or replica.probeOK is False
    ]
    return DeferredList(probes, consumeErrors=True) if probes else succeed(None)
