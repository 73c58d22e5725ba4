# -*- test-case-name: tests.test_demos -*-
"""
demo-cancel: clients abandon interruptible and streaming requests, spread
over every async replica; each abort must reach its backend as a cancelled
call (seed 000 end to end), and no work may run on after an abort.
"""

from __future__ import annotations

import time

from .compose import ComposeStack
from .narration import Narrator
from .traffic import abandon

TITLE = "client aborts cancel the backends' work, on every replica"
ENDPOINTS = ("interruptible", "stream")


def _totals(stack: ComposeStack, replicas: list[str]) -> dict[str, dict[str, int]]:
    totals = {name: {"started": 0, "cancelled": 0, "wasted": 0, "in_flight": 0} for name in ENDPOINTS}
    for container in replicas:
        endpoints = stack.readJSON(container, "/async/stats")["endpoints"]
        for name in ENDPOINTS:
            for key in totals[name]:
                totals[name][key] += endpoints[name][key]
    return totals


def _byReplica(stack: ComposeStack, replicas: list[str]) -> dict[str, int]:
    return {
        container: sum(
            stack.readJSON(container, "/async/stats")["endpoints"][name]["cancelled"]
            for name in ENDPOINTS
        )
        for container in replicas
    }


def run(stack: ComposeStack, say: Narrator, short: bool) -> bool:
    replicas = stack.containers("async")
    if not replicas:
        return say.verdict(False, "no async container runs: start the stack with `make up`")
    say.step(f"{len(replicas)} async replica(s): {', '.join(replicas)}")
    say.watch(f"http://{stack.publish}/ (in flight per replica) and /async/stats")
    each = 8 if short else 40
    paths = [f"/async/interruptible?seconds=30&n={i}" for i in range(each)] + [
        f"/async/stream?chunks=60&interval=0.5&n={i}" for i in range(each)
    ]
    before = _totals(stack, replicas)
    cancelledBefore = _byReplica(stack, replicas)
    held = sum(before[name]["in_flight"] for name in ENDPOINTS)

    def allHeld() -> bool:
        now = _totals(stack, replicas)
        return sum(now[name]["in_flight"] for name in ENDPOINTS) >= held + len(paths)

    say.step(f"open {len(paths)} requests ({each} interruptible 30 s, {each} streams of 30 s)"
             " and wait until the backends hold them all")
    sent = abandon(stack.front, paths, hold=0, ready=allHeld, limit=30)
    abortedAt = time.monotonic()
    say.step(f"abort all {sent} at once (TCP reset, like a closed tab)")
    say.figure("aborts sent", sent)

    deadline = abortedAt + 15
    while True:
        after = _totals(stack, replicas)
        cancelled = sum(after[n]["cancelled"] - before[n]["cancelled"] for n in ENDPOINTS)
        if cancelled >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    say.figure("cancellations counted by the backends", cancelled)
    say.figure("seconds from the aborts to the last cancellation",
               round(time.monotonic() - abortedAt, 2))
    spread = {
        container: count - cancelledBefore[container]
        for container, count in _byReplica(stack, replicas).items()
    }
    say.figure("cancellations per replica", spread)
    wasted = sum(after[n]["wasted"] - before[n]["wasted"] for n in ENDPOINTS)
    say.figure("work done after an abort (wasted)", wasted)
    left = sum(after[n]["in_flight"] for n in ENDPOINTS) - held
    say.figure("still in flight", left)
    passed = cancelled == sent and wasted == 0 and left <= 0
    return say.verdict(
        passed,
        f"{sent} aborts sent, {cancelled} cancelled at the backends, {wasted} ran on",
    )
