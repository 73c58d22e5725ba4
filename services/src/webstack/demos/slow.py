# -*- test-case-name: tests.test_demos -*-
"""
demo-slow-replica: one of two async replicas is made slow with the fault
switch (every answer a second late).  The front balances on requests in
flight, so a replica that holds its requests longer is sent fewer: about
one a second here, against hundreds to the healthy one, and the route's
p99 stays within twice its healthy baseline.  Then the fault is cleared.
"""

from __future__ import annotations

import time
from collections import Counter

from .compose import ComposeStack, StackError
from .narration import Narrator
from .traffic import SteadyLoad, percentile, waitUntilSeen

TITLE = "one async replica made slow: the front moves traffic away, p99 holds"
PATH = "/async/delay?seconds=0.01"
LATENCY = "1s"


def _fault(stack: ComposeStack, container: str, *args: str) -> None:
    stack.docker("exec", container, "python", "-m", "webstack.runtime.faults", *args,
                 "--service", "async", timeout=30)


def run(stack: ComposeStack, say: Narrator, short: bool) -> bool:
    before = len(stack.containers("async"))
    if before < 2:
        say.step("make scale SERVICE=async N=2")
        stack.scale("async", 2)
        waitUntilSeen(stack, "async", 2)
    replicas = stack.containers("async")
    slow = replicas[-1]
    slowHost = stack.hostname(slow)
    window = 4 if short else 15
    say.step(f"steady load: 8 clients, GET {PATH} one after another, for {window} s (baseline)")
    say.watch(f"http://{stack.publish}/ (in flight per replica); /-/dashboard")
    load = SteadyLoad(stack.front, PATH, clients=8, interval=0.0, limit=4 * window + 60).start()
    try:
        time.sleep(window)
        baseline = [a.seconds for a in load.since(0)]
        p99Before = percentile(baseline, 0.99)
        say.figure("baseline p50 / p99 (ms)",
                   f"{percentile(baseline, 0.5) * 1000:.1f} / {p99Before * 1000:.1f}")
        say.step(f"make fault SERVICE=async LATENCY={LATENCY} REPLICA={slow}")
        _fault(stack, slow, "set", "--latency", LATENCY)
        faulted = time.monotonic()
        time.sleep(window)
        during = load.since(faulted + 1)
    finally:
        answers = load.stop()
        try:
            say.step(f"make fault-clear SERVICE=async (on {slow})")
            _fault(stack, slow, "clear")
        except StackError as e:
            say.note(f"clearing the fault failed: {e}")
    served = Counter(a.servedBy for a in during)
    share = served.get(slowHost, 0) / len(during) if during else 0.0
    p99During = percentile([a.seconds for a in during], 0.99)
    failed = [a for a in answers if a.failed]
    say.figure("requests to the slow replica while slow", f"{served.get(slowHost, 0)} of {len(during)} ({share:.1%})")
    say.figure("p50 / p99 while one replica is slow (ms)",
               f"{percentile([a.seconds for a in during], 0.5) * 1000:.1f} / {p99During * 1000:.1f}")
    say.figure("failed requests", len(failed))
    if before < 2:
        say.step(f"back to {before} async replica(s)")
        stack.scale("async", max(1, before))
    passed = bool(during) and not failed and p99During <= 2 * p99Before
    return say.verdict(
        passed,
        f"p99 {p99During * 1000:.1f} ms with a slow replica vs {p99Before * 1000:.1f} ms"
        f" healthy ({p99During / p99Before if p99Before else 0:.2f}×, bound 2×);"
        f" the slow one took {share:.1%}",
    )
