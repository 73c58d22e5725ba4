"""
Cancellation accounting: did every client abort reach a backend?

locust only knows what its clients did (how many requests they abandoned);
only the async service knows what it cancelled.  So the service's counters
(C{/async/stats}) are read from every replica before and after a run and
compared with the aborts the clients sent.  Pure functions on plain dicts,
so they are tested without locust or a server.

A replica is identified by the C{replica} and C{pid} its stats report, so a
replica that appears during the run (scaled up) counts from zero, and one
that vanishes is reported as lost (its counts are gone with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ABORTABLE = ("interruptible", "logged", "stream")
"""
The endpoints that cancel their work when the client leaves; the cancelling
and streaming users abort only these.
"""

COUNTS = ("started", "completed", "cancelled", "wasted", "in_flight")

Snapshot = dict[str, dict[str, dict[str, int]]]
"""
replica id -> endpoint -> counts, as C{/async/stats} gives them.
"""


def replicaId(stats: dict) -> str:
    return f"{stats.get('replica', '?')}:{stats.get('pid', '?')}"


def snapshotOf(statsDocuments) -> Snapshot:
    """
    One snapshot from several C{/async/stats} documents (one per replica; a
    replica read twice keeps its last document).
    """
    return {replicaId(d): d["endpoints"] for d in statsDocuments}


def _delta(before: Snapshot, after: Snapshot, endpoints, count: str) -> int:
    total = 0
    for replica, endpointsAfter in after.items():
        endpointsBefore = before.get(replica, {})
        for endpoint in endpoints:
            now = endpointsAfter.get(endpoint, {}).get(count, 0)
            then = endpointsBefore.get(endpoint, {}).get(count, 0)
            total += now - then
    return total


@dataclass
class Accounting:
    """
    @ivar abortsSent: requests the clients abandoned on purpose.
    @ivar before: the replicas' counters when the run started.
    @ivar after: ... and when it ended (after the users stopped).
    """

    abortsSent: int
    before: Snapshot
    after: Snapshot
    notes: list[str] = field(default_factory=list)

    @property
    def observed(self) -> int:
        """
        Cancellations the backends counted during the run.
        """
        return _delta(self.before, self.after, ABORTABLE, "cancelled")

    @property
    def inFlightAtEnd(self) -> int:
        return sum(
            counts.get("in_flight", 0)
            for endpoints in self.after.values()
            for counts in endpoints.values()
        )

    @property
    def completedAfterAbort(self) -> int:
        """
        Work done to the end for requests whose client had left: the naive
        seeds' I{wasted} count on the abortable endpoints, plus anything the
        interruptible endpoints completed (only aborting users call them).
        Should be 0.
        """
        return _delta(self.before, self.after, ABORTABLE, "wasted") + _delta(
            self.before, self.after, ("interruptible", "logged"), "completed"
        )

    @property
    def ratio(self) -> float:
        return self.observed / self.abortsSent if self.abortsSent else 1.0

    @property
    def unaccounted(self) -> int:
        """
        Aborts sent that no backend cancelled and that are not still in
        flight: those that were lost.  Should be 0.
        """
        return max(0, self.abortsSent - self.observed - self.inFlightAtEnd)

    @property
    def lostReplicas(self) -> list[str]:
        return sorted(set(self.before) - set(self.after))

    def summary(self) -> dict[str, object]:
        return {
            "aborts_sent": self.abortsSent,
            "cancellations_observed": self.observed,
            "ratio": round(self.ratio, 4),
            "in_flight_at_end": self.inFlightAtEnd,
            "unaccounted": self.unaccounted,
            "completed_after_abort": self.completedAfterAbort,
            "replicas": sorted(self.after),
            "replicas_lost": self.lostReplicas,
            "notes": self.notes,
        }
