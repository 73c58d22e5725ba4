"""
C{make bench-instructions}: what one proxied request costs the front, in
instructions counted by valgrind's callgrind, beside what the async service
costs serving the same answer itself.

CPU seconds per request are what C{make bench} reports and what the targets
are stated in, but on a shared two-core machine they move by a fifth from
one run to the next, so a change worth 5% cannot be seen in them.  An
instruction count is the same whatever else the machine is doing (two runs
of the same code agree within about 1%): the figure for A/B work on the
front's cost.  Run this on each version, compare, then confirm with C{make
bench}.

How: the async service runs as usual; a one-worker front runs under
callgrind in front of it.  A client sends C{--warmup} requests (imports,
caches, pools), callgrind's counters are zeroed, the client sends exactly
C{--requests} over C{--connections} keep-alive connections, and the
counters are dumped: every instruction the front's process ran for those
requests, its loop and its timers included.  Then one worker of a
two-worker front is measured the same way (its costs of its own: the
metrics file the workers share, C{X-Worker}, the C{worker} field of each
log line), and the async service itself.  Writes
C{OUT/instructions-STAMP.json}.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from webstack.localstack import LocalStack, ServiceProcess, waitReady
from webstack.runtime.workers import WRAPPER_ENV

from .load import keepAliveRequests
from .phases import TINY
from .proctree import processTree, stopTree
from .servers import WORKERS_ENV, stackEnv
from .tools import ensureTool


def totalInstructions(dump: str) -> int:
    """
    The instruction count of one callgrind dump: its C{totals:} line (or,
    in older dumps, C{summary:}).
    """
    for line in dump.splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError("no totals: line in the callgrind dump")


def measure(pid: int, port: int, requests: int, connections: int,
            warmup: int, dumps: str) -> dict:
    """
    Instructions per request of process C{pid} (running under callgrind,
    its dumps named C{dumps}.PID.N) for C{requests} GETs of L{TINY} on
    C{port}.
    """
    keepAliveRequests(port, TINY, warmup, connections)
    _callgrindControl("--zero", pid)
    answered = keepAliveRequests(port, TINY, requests, connections)
    before = set(glob.glob(f"{dumps}.{pid}*"))
    _callgrindControl("--dump", pid)
    [dump] = set(glob.glob(f"{dumps}.{pid}*")) - before
    total = totalInstructions(Path(dump).read_text())
    ok = answered["statuses"].get(200, 0)
    if ok != requests:
        raise RuntimeError(f"{requests} requests sent, {ok} answered 200: {answered}")
    return {"requests": requests, "instructions": total, "per_request": round(total / requests)}


def _callgrindControl(command: str, pid: int) -> None:
    """
    Tell the callgrind running as C{pid} to C{--zero} or C{--dump} its
    counters; returns once it has.
    """
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True,
                   timeout=120)


def underCallgrind(stack: LocalStack, name: str, overrides: dict[str, str], dumps: str,
                   valgrind: str) -> tuple[ServiceProcess, int]:
    """
    One more C{name} service on a free port, run under callgrind.
    """
    env = stack._env({**overrides, f"WEBSTACK_{name.upper()}_LISTEN": "tcp:0:interface=127.0.0.1",
                      # The same string hashes (so set orders), so the same work.
                      "PYTHONHASHSEED": "0"})
    wrapper = [valgrind, "--tool=callgrind", f"--callgrind-out-file={dumps}.%p"]
    service = ServiceProcess(name, env, echo=False, label=f"{name}-callgrind", wrapper=wrapper)
    try:
        port = service.waitListening(300)
        waitReady(f"http://127.0.0.1:{port}/-/readyz" if name == "front"
                  else f"http://127.0.0.1:{port}/readyz", 300)
    except BaseException:
        stopTree(service.process.pid, grace=60)
        raise
    return service, port


def workerUnderCallgrind(stack: LocalStack, backendPort: int, dumps: str,
                         valgrind: str) -> tuple[ServiceProcess, int, int, int]:
    """
    A two-worker front on a free port, each worker under callgrind
    (L{WRAPPER_ENV}); once it answers, the second worker is stopped
    (SIGSTOP) and the front is waited for again, so that the first accepts
    every connection: one worker's cost per request, without the smaller
    turns of two splitting the work (which depend on how they split it).

    @return: the front, its port, the measured worker's pid, the stopped
        one's (to be continued before the front is stopped).
    """
    env = stack._env({
        WORKERS_ENV: "2",
        WRAPPER_ENV: f"{valgrind} --tool=callgrind --callgrind-out-file={dumps}.%p",
        "WEBSTACK_FRONT_LISTEN": "tcp:0:interface=127.0.0.1",
        "WEBSTACK_FRONT_ROUTES_ASYNC_UPSTREAM": f"127.0.0.1:{backendPort}",
        "PYTHONHASHSEED": "0",
    })
    front = ServiceProcess("front", env, echo=False, label="front-workers-callgrind")
    try:
        port = front.waitListening(60)
        ready = f"http://127.0.0.1:{port}/-/readyz"
        waitReady(ready, 300)
        workers = sorted(p for p in processTree(front.process.pid) if p != front.process.pid)
        if len(workers) != 2:
            raise RuntimeError(f"a two-worker front runs {len(workers)} workers")
        measured, stopped = workers
        os.kill(stopped, signal.SIGSTOP)
        waitReady(ready, 300)
    except BaseException:
        stopTree(front.process.pid, grace=60)
        raise
    return front, port, measured, stopped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="webstack.bench.instructions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=400)
    args = parser.parse_args(argv)
    if not 100 <= args.requests <= 100_000 or not 1 <= args.connections <= 64 \
            or not 0 <= args.warmup <= 10_000:
        parser.error("--requests 100..100000, --connections 1..64, --warmup 0..10000")
    valgrind, note = ensureTool("valgrind", "valgrind")
    if valgrind is None:
        raise SystemExit(f"make bench-instructions needs valgrind: {note}")

    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "config": vars(args), "tools": {"valgrind": note}}
    with ExitStack() as cleanup, tempfile.TemporaryDirectory(prefix="callgrind-") as scratch:
        stack = LocalStack(ephemeral=True, backends=("async",), env=stackEnv())
        stack.start()
        cleanup.callback(stack.stop)
        backend = stack.services["async"]
        for key, name, overrides in (
            ("front", "front", {WORKERS_ENV: "1",
                                "WEBSTACK_FRONT_ROUTES_ASYNC_UPSTREAM": f"127.0.0.1:{backend.port}"}),
            ("worker", None, {}),
            ("direct", "async", {}),
        ):
            dumps = os.path.join(scratch, key)
            stopped = None
            if name is None:
                print(f"{key}: starting a two-worker front, its workers under callgrind"
                      " (slow: about 30 s)...", flush=True)
                service, port, pid, stopped = workerUnderCallgrind(
                    stack, backend.port, dumps, valgrind)
            else:
                print(f"{key}: starting webstack-{name} under callgrind (slow: about 20 s)...",
                      flush=True)
                service, port = underCallgrind(stack, name, overrides, dumps, valgrind)
                pid = service.process.pid
            try:
                results[key] = measure(pid, port, args.requests, args.connections,
                                       args.warmup, dumps)
            finally:
                if stopped is not None:
                    os.kill(stopped, signal.SIGCONT)
                stopTree(service.process.pid, grace=60)
                service.wait(10)
            print(f"{key}: {results[key]['per_request']:,} instructions per request"
                  f" ({args.requests:,} requests)", flush=True)
    results["front_per_direct"] = round(
        results["front"]["per_request"] / results["direct"]["per_request"], 3)
    results["worker_per_front"] = round(
        results["worker"]["per_request"] / results["front"]["per_request"], 3)
    print(f"the front's instructions per proxied request: {results['front']['per_request']:,},"
          f" {results['front_per_direct']:.2f}x the async service's own per request;"
          f" one of two workers: {results['worker']['per_request']:,},"
          f" {results['worker_per_front']:.2f}x the one-worker front's")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"instructions-{stamp}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
