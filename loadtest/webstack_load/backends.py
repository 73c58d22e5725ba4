"""
Reading the async service's counters through the front.

The load generator may not reach the replicas themselves (in compose they
sit on an internal network), so it asks the front for C{/async/stats} until
every replica the front knows has answered once: the front spreads the
requests over them, and each answer names its replica.
"""

from __future__ import annotations

import json
import urllib.request

from .accounting import replicaId


def getJSON(url: str, timeout: float = 5.0) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def replicaCount(host: str) -> int:
    """
    How many async replicas the front knows (its landing page says).
    """
    for demo in getJSON(host.rstrip("/") + "/")["demos"]:
        if demo["route"] == "async":
            return max(1, len(demo["replicas"]))
    return 1


def readReplicas(host: str) -> tuple[list[dict], list[str]]:
    """
    Every replica's C{/async/stats}, and notes on what could not be read.
    """
    expected = replicaCount(host)
    seen: dict[str, dict] = {}
    for _ in range(max(4, 8 * expected)):
        document = getJSON(host.rstrip("/") + "/async/stats")
        seen[replicaId(document)] = document
        if len(seen) >= expected:
            break
    notes = []
    if len(seen) < expected:
        notes.append(f"read {len(seen)} of {expected} async replicas")
    return list(seen.values()), notes


def inFlight(documents: list[dict]) -> tuple[int, int, int]:
    """
    (in flight, cancelled, completed), summed over replicas and endpoints.
    """
    totals = [0, 0, 0]
    for document in documents:
        t = document["totals"]
        totals[0] += t["in_flight"]
        totals[1] += t["cancelled"]
        totals[2] += t["completed"]
    return tuple(totals)
