# -*- test-case-name: tests.test_demos -*-
"""
demo-hostile: while a normal client measures, four attackers do their worst
through the front (docs/hardening.md has every bound they meet): slowloris
connections, malformed requests, a range flood, a login flood, all from a
process of their own.  Each attack must meet its bound (L{verdict}), and the
normal client must lose nothing and keep its p99 within twice its baseline or
within the stack's lateness objective, whichever is larger.
"""

from __future__ import annotations

import base64
import multiprocessing
import queue
import signal
import socket
import threading
import time

from .compose import ComposeStack
from .narration import Narrator
from .traffic import SteadyLoad, percentile

TITLE = "slowloris, malformed requests, a range flood and a login flood vs a normal client"
NORMAL = "/static/style.css"
MALFORMED = (
    b"GET /static/\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /static/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"POST /async/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
    b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"BREW /async/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GARBAGE\r\n\r\n",
)
RANGES = "bytes=" + ",".join(["0-"] * 3000)
SLOWLORIS = 300
OBJECTIVE = 0.100
"""
Seconds: the lateness p99 C{make load} holds the stack to.  The normal
client's p99 may grow to twice its baseline or to this, whichever is larger:
a 2x bound alone on a p99 of about 11 ms failed CI twice in one run (2.01x,
then 7.41x with the attackers' own process slowed as much, 510 malformed
requests sent against 600), on a two-core machine that the attackers, seven
containers and the measuring client share.  Each attack's own bound, checked
beside it, does not depend on the machine's noise.
"""
WRONG = "Basic " + base64.b64encode(b"bob:guess").decode()


def _slowloris(front, stop: threading.Event, count: int, opened: list) -> None:
    sockets = []
    try:
        for _ in range(count):
            if stop.is_set():
                break
            try:
                s = socket.create_connection(front, timeout=5)
                s.sendall(b"GET /static/ HTTP/1.1\r\nHost: x\r\n")
                sockets.append(s)
            except OSError:
                pass
        opened.append(len(sockets))
        while not stop.wait(1.0):
            for s in list(sockets):
                try:
                    s.sendall(b"X-a: b\r\n")
                except OSError:
                    sockets.remove(s)
    finally:
        for s in sockets:
            s.close()


def _malformed(front, stop: threading.Event, sent: list) -> None:
    for _ in range(100_000):
        if stop.is_set():
            return
        for raw in MALFORMED:
            try:
                with socket.create_connection(front, timeout=5) as s:
                    s.sendall(raw)
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(65536):
                        pass
            except OSError:
                pass
            sent.append(1)
        stop.wait(0.05)


def _attack(front, window: float, ready, stop, results) -> None:
    """
    Every attacker, in a process of its own (started by L{run}): threads of
    the measuring process would make the normal client wait for the GIL, and
    the demo would measure itself instead of the stack.  Puts "ready" on
    C{ready} once the slowloris connections are open, runs until C{stop} is
    set or the demo's process is gone (killed, it cannot set C{stop}), then
    puts the figures on C{results}.
    """
    # Ctrl-C reaches the whole process group: the demo's own process stops
    # this one (through C{stop}), without a second traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    demo = multiprocessing.parent_process()
    halt = threading.Event()
    opened: list[int] = []
    malformed: list[int] = []
    # Paced: on a small machine the attackers share the cores with the
    # stack and the measuring client, and the demo measures the stack.
    ranges = SteadyLoad(front, "/static/large.txt", clients=1, interval=0.1,
                        limit=window + 30, headers={"Range": RANGES}).start()
    logins = SteadyLoad(front, "/auth/", clients=1, interval=0.1,
                        limit=window + 30, headers={"Authorization": WRONG}).start()
    attackers = [
        threading.Thread(target=_slowloris, args=(front, halt, SLOWLORIS, opened), daemon=True),
        threading.Thread(target=_malformed, args=(front, halt, malformed), daemon=True),
    ]
    for thread in attackers:
        thread.start()
    deadline = time.monotonic() + 30
    while not opened and time.monotonic() < deadline and demo.is_alive():
        time.sleep(0.1)
    ready.put("ready")
    deadline = time.monotonic() + window + 60
    while not stop.wait(0.5) and demo.is_alive() and time.monotonic() < deadline:
        pass
    halt.set()
    rangeAnswers = ranges.stop()
    loginAnswers = logins.stop()
    for thread in attackers:
        thread.join(timeout=30)
    results.put({
        "opened": opened[0] if opened else 0,
        "malformed": len(malformed),
        "ranges": _statuses(rangeAnswers),
        "logins": _statuses(loginAnswers),
    })


def run(stack: ComposeStack, say: Narrator, short: bool) -> bool:
    window = 6 if short else 15
    say.step(f"baseline: a normal client, GET {NORMAL} every 20 ms, for {window} s")
    normal = SteadyLoad(stack.front, NORMAL, clients=2, interval=0.02, limit=window * 3 + 60).start()
    context = multiprocessing.get_context("spawn")
    ready, results, stop = context.Queue(), context.Queue(), context.Event()
    attack = context.Process(target=_attack, args=(stack.front, window, ready, stop, results),
                             daemon=True)
    try:
        time.sleep(window)
        baseline = [a.seconds for a in normal.since(0)]
        say.figure("baseline p50 / p99 (ms)",
                   f"{percentile(baseline, 0.5) * 1000:.1f} / {percentile(baseline, 0.99) * 1000:.1f}")
        say.step("attack: 300 slowloris connections, malformed requests (6 kinds, every 50 ms),"
                 " a 3,000-range request on /static/large.txt and a wrong password for bob"
                 " every 100 ms each, from a process of their own")
        say.watch("docs/hardening.md (each bound); the front's /-/metrics"
                  " (http_requests_refused_total); the auth service's 429s")
        attack.start()
        # Measured once every attacker is at it (the 300 slowloris
        # connections take a moment to open).
        _receive(ready, attack, 60, "the attackers to start")
        split = time.monotonic()
        time.sleep(window)
        stop.set()
        figures = _receive(results, attack, 90, "the attackers' figures")
    finally:
        stop.set()
        if attack.pid is not None:  # started
            attack.join(timeout=30)
            if attack.is_alive():
                attack.kill()
                attack.join(timeout=5)
        answers = normal.stop()
    during = [a.seconds for a in answers if split <= a.at < split + window]
    failed = [a for a in answers if a.failed]
    say.figure("slowloris connections held open", figures["opened"])
    say.figure("malformed requests sent", figures["malformed"])
    say.figure("range-flood answers (status: count)", figures["ranges"])
    say.figure("wrong-password answers (status: count)", figures["logins"])
    say.figure("normal client during the attack p50 / p99 (ms)",
               f"{percentile(during, 0.5) * 1000:.1f} / {percentile(during, 0.99) * 1000:.1f}")
    say.figure("normal client's failed requests", len(failed))
    return say.verdict(*verdict(figures, baseline, during, len(failed)))


def verdict(figures: dict, baseline: list[float], during: list[float],
            failed: int) -> tuple[bool, str]:
    """
    Whether the stack held, and why not if it did not: every slowloris
    connection open (the attack ran), the range flood answered C{200} with
    the file each time (never a multipart of 3,000 parts), the login flood
    met C{429} and was never let in, the normal client lost no request and
    kept its p99 within twice its baseline or within L{OBJECTIVE}.
    """
    p99Before, p99During = percentile(baseline, 0.99), percentile(during, 0.99)
    bound = max(2 * p99Before, OBJECTIVE)
    ranges, logins = figures["ranges"], figures["logins"]
    faults = []
    if figures["opened"] < SLOWLORIS:
        faults.append(f"{figures['opened']} of {SLOWLORIS} slowloris connections opened")
    if not ranges or set(ranges) != {200}:
        faults.append(f"range flood answered {ranges or 'nothing'}, not 200 each time")
    if not logins.get(429) or logins.get(200):
        faults.append(f"login flood answered {logins or 'nothing'}: no 429, or let in")
    if not during:
        faults.append("no normal request answered during the attack")
    if failed:
        faults.append(f"{failed} normal requests failed")
    if p99During > bound:
        faults.append(f"normal p99 over its bound of {bound * 1000:.0f} ms")
    summary = (
        f"normal p99 {p99During * 1000:.1f} ms under attack vs {p99Before * 1000:.1f} ms"
        f" baseline ({p99During / p99Before if p99Before else 0:.2f}×; bound"
        f" {bound * 1000:.0f} ms, twice the baseline or {OBJECTIVE * 1000:.0f} ms),"
        f" {failed} failed"
    )
    return not faults, "; ".join([summary, *faults])


def _receive(channel, process, timeout: float, what: str):
    """
    The next item from C{channel}, put there by C{process}; a clear error if
    that process dies without putting it, or nothing comes within
    C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Asked before waiting: a process that puts its item and exits
        # between the wait and the question has still delivered it.
        alive = process.is_alive()
        try:
            return channel.get(timeout=0.5)
        except queue.Empty:
            if not alive:
                raise RuntimeError(
                    f"waiting for {what}: their process exited with code {process.exitcode}"
                ) from None
    raise RuntimeError(f"waiting for {what}: nothing within {timeout:g} s")


def _statuses(answers) -> dict[int, int]:
    counts: dict[int, int] = {}
    for answer in answers:
        counts[answer.status] = counts.get(answer.status, 0) + 1
    return dict(sorted(counts.items()))
