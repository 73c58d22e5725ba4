# -*- test-case-name: tests.test_demos -*-
"""
demo-scale: under steady load, async goes from one replica to three; the
front re-resolves the name every second and balances on requests in
flight, so within 10 s each of the three takes a third (±20%); back to
one, the two that go drain on SIGTERM and not one request fails.
"""

from __future__ import annotations

import time
from collections import Counter

from .compose import ComposeStack
from .narration import Narrator
from .traffic import SteadyLoad

TITLE = "async from 1 to 3 replicas and back under load, nothing lost"
PATH = "/async/delay?seconds=0.05"


def _shares(answers) -> dict[str, float]:
    served = Counter(a.servedBy for a in answers if not a.failed)
    total = sum(served.values())
    return {name: count / total for name, count in served.items()} if total else {}


def run(stack: ComposeStack, say: Narrator, short: bool) -> bool:
    if len(stack.containers("async")) != 1:
        say.step("start from one async replica")
        stack.scale("async", 1)
    say.step(f"steady load: 6 clients, GET {PATH} every 20 ms each")
    say.watch(f"http://{stack.publish}/ (the async replicas and their in-flight counts)")
    load = SteadyLoad(stack.front, PATH, clients=6, interval=0.02, limit=120).start()
    try:
        time.sleep(2 if short else 5)
        say.step("make scale SERVICE=async N=3")
        starting = time.monotonic()
        stack.scale("async", 3)
        scaled = time.monotonic()
        say.figure("seconds to start two containers", round(scaled - starting, 1))
        spreadAfter = None
        shares: dict[str, float] = {}
        while time.monotonic() - scaled < 10:
            time.sleep(0.5)
            window = load.since(time.monotonic() - 2)
            shares = _shares(window)
            if len(shares) == 3 and all(abs(s - 1 / 3) <= 0.2 / 3 for s in shares.values()):
                spreadAfter = time.monotonic() - scaled
                break
        say.figure("shares of the last 2 s", {k: f"{v:.0%}" for k, v in sorted(shares.items())})
        say.figure("seconds until the three share within ±20%",
                   round(spreadAfter, 1) if spreadAfter is not None else "not within 10 s")
        time.sleep(1 if short else 5)
        say.step("make scale SERVICE=async N=1 (two replicas drain and stop)")
        shrinking = time.monotonic()
        stack.scale("async", 1)
        say.figure("seconds to stop two containers", round(time.monotonic() - shrinking, 1))
        time.sleep(2 if short else 5)
    finally:
        answers = load.stop()
    failed = [a for a in answers if a.failed]
    say.figure("requests", len(answers))
    say.figure("failed requests", len(failed))
    if failed:
        say.note(f"first failure: {failed[0]}")
    passed = spreadAfter is not None and not failed and len(answers) > 0
    return say.verdict(
        passed,
        f"spread over 3 in {spreadAfter:.1f} s, {len(failed)} of {len(answers)} failed"
        if spreadAfter is not None
        else f"no even spread within 10 s; {len(failed)} of {len(answers)} failed",
    )
