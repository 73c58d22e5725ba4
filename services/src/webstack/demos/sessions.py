# -*- test-case-name: tests.test_demos -*-
"""
demo-sessions: a client's session lives in one session replica's memory,
as in Twisted.  Scaled to three, the front's routing cookie keeps the client
on its replica, so its counter goes on; when that replica crashes the
client is balanced to another, which has never heard of it: a new session,
and the demo says so.
"""

from __future__ import annotations

import re
import time

from .compose import ComposeStack
from .narration import Narrator
from .traffic import get, waitUntilSeen

TITLE = "a session survives scaling; its replica's crash starts a new one"


class Browser:
    """
    Keeps the cookies a browser would (name=value only; paths are all under
    /session/ here).
    """

    def __init__(self, front) -> None:
        self.front = front
        self.cookies: dict[str, str] = {}

    def visit(self, path: str) -> tuple[int, str, str]:
        header = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        status, headers, body = get(self.front, path, {"Cookie": header} if header else {})
        for value in headers.get("set-cookie", "").split("\n"):
            pair = value.split(";", 1)[0].strip()
            if "=" in pair:
                name, _, cookie = pair.partition("=")
                self.cookies[name] = cookie
        return status, headers.get("x-served-by", ""), body.decode("utf-8", "replace")


def _visit(browser: Browser) -> tuple[int, str]:
    status, servedBy, body = browser.visit("/session/counter")
    found = re.search(r"Visit #(\d+)", body)
    if status != 200 or not found:
        raise RuntimeError(f"/session/counter answered {status}: {body[:80]!r}")
    return int(found.group(1)), servedBy


def run(stack: ComposeStack, say: Narrator, short: bool) -> bool:
    before = len(stack.containers("session"))
    browser = Browser(stack.front)
    say.step("a client visits /session/counter three times")
    counts = [_visit(browser)[0] for _ in range(3)]
    say.figure("its counter", counts)
    say.step("make scale SERVICE=session N=3")
    stack.scale("session", 3)
    waitUntilSeen(stack, "session", 3)
    say.watch(f"http://{stack.publish}/ (three session replicas); the WEBSTACK_ROUTE cookie")
    visits = [_visit(browser) for _ in range(6 if short else 12)]
    survived = [n for n, _ in visits] == list(range(counts[-1] + 1, counts[-1] + 1 + len(visits)))
    replica = visits[-1][1]
    say.figure("counter after scaling", [n for n, _ in visits])
    say.figure("served by", sorted({host for _, host in visits}))
    say.figure("session survived the scaling", survived)
    victim = next((c for c in stack.containers("session") if stack.hostname(c) == replica), None)
    if victim is None:
        return say.verdict(False, f"no session container has the hostname {replica!r}")
    say.step(f"crash its replica, {victim}")
    stack.crash(victim)
    time.sleep(1.5)
    number, newReplica = _visit(browser)
    say.figure("counter on the next visit", number)
    say.figure("served by now", newReplica)
    fresh = number == 1
    if fresh:
        say.note("a new session: the old one lived only in the crashed process's memory"
                 " (a shared store would keep it; the seeds' Site.sessions cannot);"
                 f" {'another replica' if newReplica != replica else 'the restarted replica'}"
                 " answered")
    say.step(f"back to {before} session replica(s)")
    deadline = time.monotonic() + 60
    while stack.state(victim) != "running healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
    stack.scale("session", max(1, before))
    return say.verdict(
        survived and fresh,
        "the session survived scaling to 3; its replica's crash gave the client a new one"
        if survived and fresh
        else f"survived scaling: {survived}; new session after the crash: {fresh}",
    )
