# -*- test-case-name: tests.test_demos -*-
"""
demo-chaos: under load, one of two async replicas crashes (its process is
killed inside the container).  Only the requests it held fail; the front
stops sending to it at once (a refused connection ejects it, and the
request is tried on the other); the engine's restart policy brings it back
and the front puts it in rotation again.  The figures say how long each
step took.
"""

from __future__ import annotations

import time

from .compose import ComposeStack
from .narration import Narrator
from .traffic import SteadyLoad, waitUntilSeen

TITLE = "an async replica crashes under load: only its requests in flight fail"
PATH = "/async/delay?seconds=0.3"


def run(stack: ComposeStack, say: Narrator, short: bool) -> bool:
    before = stack.containers("async")
    if len(before) < 2:
        say.step("make scale SERVICE=async N=2 (a survivor to fail over to)")
        stack.scale("async", 2)
        waitUntilSeen(stack, "async", 2)
    replicas = stack.containers("async")
    victim = replicas[0]
    victimHost = stack.hostname(victim)
    restarts = stack.restartCount(victim)
    clients = 8
    say.step(f"steady load: {clients} clients, GET {PATH} (each holds a replica 0.3 s)")
    say.watch(f"http://{stack.publish}/ (the async replicas: one goes down, then up)")
    load = SteadyLoad(stack.front, PATH, clients=clients, interval=0.05, limit=180).start()
    passed = False
    try:
        # Wait until the victim is in rotation, so it holds requests when it dies.
        deadline = time.monotonic() + 30
        while not any(a.servedBy == victimHost for a in load.since(time.monotonic() - 1)):
            if time.monotonic() > deadline:
                return say.verdict(False, f"{victim} never answered before the crash")
            time.sleep(0.2)
        time.sleep(1 if short else 3)
        say.step(f"crash {victim}: its service process is killed (SIGKILL)")
        crashed = time.monotonic()
        stack.crash(victim)
        # Back up: the restart policy starts it; healthy, then in rotation.
        upAt = inRotationAt = None
        deadline = crashed + 90
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if upAt is None:
                if stack.restartCount(victim) > restarts and stack.state(victim) == "running healthy":
                    upAt = time.monotonic()
            elif any(a.servedBy == victimHost for a in load.since(upAt)):
                inRotationAt = time.monotonic()
                break
        time.sleep(1)
    finally:
        answers = load.stop()
    failures = [a for a in answers if a.failed and a.at + a.seconds >= crashed]
    late = [a for a in failures if a.at > crashed + 1.0]
    say.figure("requests during the run", len(answers))
    say.figure("failed (sent before the crash, held by the victim)", len(failures) - len(late))
    say.figure("failed, sent more than 1 s after the crash", len(late))
    say.figure("seconds until the engine had it running and healthy",
               round(upAt - crashed, 1) if upAt else "not within 90 s")
    say.figure("seconds until the front sent it requests again",
               round(inRotationAt - crashed, 1) if inRotationAt else "not within 90 s")
    if failures:
        say.note(f"a failure: {failures[0]}")
    passed = upAt is not None and inRotationAt is not None and not late and len(failures) <= clients
    if len(before) < 2:
        say.step(f"back to {len(before)} async replica(s)")
        stack.scale("async", max(1, len(before)))
    return say.verdict(
        passed,
        f"{len(failures)} failed (at most the {clients} in flight), none after 1 s;"
        f" back in rotation after {inRotationAt - crashed:.1f} s" if inRotationAt else
        f"{len(failures)} failed; the replica did not come back into rotation",
    )
