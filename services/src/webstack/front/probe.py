# -*- test-case-name: webstack.tests.test_front_units -*-
"""
Active health checks: every C{health_interval} seconds, each replica's
C{/readyz} is asked through the front's own pool.  A replica whose probe
fails (an error, a timeout, anything but 200, e.g. 503 while it drains) is
not sent new requests until a probe passes again.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, DeferredList, succeed
from twisted.logger import Logger
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from .proxy import describeFailure

log = Logger()
_HEADERS = Headers({b"user-agent": [b"webstack-front-probe"]})


def probeReplica(agent, reactor, replicaSet, replica, timeout: float):
    d = agent.request(b"GET", replica.baseURL + b"/readyz", _HEADERS)
    d.addTimeout(timeout, reactor)

    def answered(response):
        return readBody(response).addCallback(lambda _: response.code == 200)

    def concluded(ok):
        if ok is not True:
            if ok is False:
                reason = "not ready (status other than 200)"
            elif ok.check(CancelledError) or "CancelledError" in describeFailure(ok):
                reason = f"no answer within {timeout:g}s"
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

    return d.addCallback(answered).addBoth(concluded)


def probeAll(agent, reactor, replicaSets, timeout: float):
    probes = [
        probeReplica(agent, reactor, replicaSet, replica, timeout)
        for replicaSet in replicaSets.values()
        for replica in list(replicaSet.replicas)
    ]
    return DeferredList(probes, consumeErrors=True) if probes else succeed(None)
