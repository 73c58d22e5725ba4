"""
Client aborts through a proxy: N clients start C{/async/logged?seconds=S}
and leave once the backend has started all of them.  The backend counts what
it cancelled (its C{/async/stats}), and its C{interrupted} log line for each
request id says when its errback ran: the latency of an abort is that time
minus the moment the client closed its socket, both on this machine's clock.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime

from .load import closeAll, openAndAbort, percentile

ABORT_SPACING = 0.002
"""
Seconds between two clients leaving: 200 aborts over 0.4 s.  Closing them all
in the same millisecond would measure the queue of one burst instead of the
latency of an abort.
"""


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/async/stats", timeout=5) as r:
        return json.loads(r.read())["endpoints"]


def waitUntil(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def measureAborts(viaPort, backendPort, backend, count, seconds, tag) -> dict:
    """
    Start C{count} logged delayed requests through C{viaPort}, leave once
    the backend has started them all, and see what the backend did.

    @param backend: the backend's L{ServiceProcess}, whose log lines hold
        the C{interrupted} events.
    """
    before = stats(backendPort)["logged"]
    ids = [f"bench-{tag}-{i}" for i in range(count)]
    sockets = openAndAbort(viaPort, f"/async/logged?seconds={seconds}", ids)
    started = waitUntil(
        lambda: stats(backendPort)["logged"]["started"] >= before["started"] + count, 15
    )
    closedAt = closeAll(sockets, ABORT_SPACING)
    waitUntil(
        lambda: stats(backendPort)["logged"]["cancelled"] >= before["cancelled"] + count,
        3,
    )
    after = stats(backendPort)["logged"]
    cancelledAt = {}
    for event in backend.events("interrupted"):
        if event.get("request_id") in closedAt:
            cancelledAt[event["request_id"]] = datetime.fromisoformat(event["time"]).timestamp()
    latencies = [(cancelledAt[i] - closedAt[i]) * 1000 for i in cancelledAt]
    cancelled = after["cancelled"] - before["cancelled"]
    result = {
        "aborted_by_clients": count,
        "all_started_before_abort": started,
        "cancelled_by_backend": cancelled,
        "ratio": cancelled / count,
        "timed_by_log_line": len(latencies),
        "cancel_latency_p50_ms": percentile(latencies, 50),
        "cancel_latency_p99_ms": percentile(latencies, 99),
        "cancel_latency_max_ms": max(latencies) if latencies else None,
    }
    if cancelled < count:
        # What the backend does with the rest: it renders them to the end.
        waitUntil(lambda: stats(backendPort)["logged"]["in_flight"] == 0, seconds + 5)
        final = stats(backendPort)["logged"]
        result["rendered_to_completion_anyway"] = final["completed"] - before["completed"]
    return result
