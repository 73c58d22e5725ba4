# -*- test-case-name: tests.test_demos -*-
"""
demo-drain: every backend restarted, one container after another, under
load on every route, and not one request fails.  Each service runs two
replicas for the demo; a restarted one gets SIGTERM, stops accepting,
finishes what it holds and closes its idle connections (the runtime's
drain), and the front sends what it refused, or what met a closing
connection, to the other replica (an idempotent request is retried).
"""

from __future__ import annotations

import base64
import time

from webstack import registry

from .compose import ComposeStack
from .narration import Narrator
from .traffic import SteadyLoad, frontSees

TITLE = "every backend restarted under load, no request lost"

PATHS = {
    "async": "/async/delay?seconds=0.1",
    "static": "/static/style.css",
    "wsgi": "/wsgi/hello",
    "cgi": "/cgi/date-example.sh",
    "auth": "/auth/",
    "session": "/session/",
}
BASIC = "Basic " + base64.b64encode(b"alice:wonderland-2026").decode()


def run(stack: ComposeStack, say: Narrator, short: bool) -> bool:
    services = ("async", "wsgi") if short else tuple(s.name for s in registry.BACKENDS)
    scaledFrom = {}
    for name in services:
        count = len(stack.containers(name))
        if count < 2:
            scaledFrom[name] = count
    if scaledFrom:
        say.step(f"two replicas of each of {', '.join(scaledFrom)} (one to fail over to)")
        for name in scaledFrom:
            stack.scale(name, 2)
    paths = [PATHS[name] for name in services]
    say.step(f"steady load: {2 * len(paths)} clients over {', '.join(paths)}")
    say.watch(f"http://{stack.publish}/ (replicas going down and up); `make logs` (drain lines)")
    loads = [
        SteadyLoad(stack.front, path, clients=2, interval=0.05, limit=600,
                   headers={"Authorization": BASIC} if path.startswith("/auth/") else {}).start()
        for path in paths
    ]
    restarted = 0
    durations = []
    try:
        time.sleep(1 if short else 3)
        for name in services:
            for container in stack.containers(name):
                say.step(f"restart {container} (SIGTERM: drain, exit, start)")
                began = time.monotonic()
                stack.restart(container)
                deadline = time.monotonic() + 60
                while stack.state(container) != "running healthy":
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{container} not healthy 60 s after its restart")
                    time.sleep(0.3)
                # As an operator's rolling restart would: the next one only
                # once the front sends to every replica again.
                while frontSees(stack.front, name) != (2, 2):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the front did not take {container} back within 60 s")
                    time.sleep(0.3)
                durations.append(time.monotonic() - began)
                say.note(f"{container} back in the front's rotation after {durations[-1]:.1f} s")
                restarted += 1
        time.sleep(1 if short else 3)
    finally:
        answers = [a for load in loads for a in load.stop()]
    failed = [a for a in answers if a.failed]
    say.figure("containers restarted", restarted)
    say.figure("seconds per restart (mean)", round(sum(durations) / len(durations), 1) if durations else "-")
    say.figure("requests", len(answers))
    say.figure("failed requests", len(failed))
    for answer in failed[:3]:
        say.note(f"failure: {answer}")
    if scaledFrom:
        say.step("back to the replicas there were")
        for name, count in scaledFrom.items():
            stack.scale(name, max(1, count))
    return say.verdict(
        not failed and restarted > 0,
        f"{restarted} containers restarted under load, {len(failed)} of {len(answers)} requests failed",
    )
