"""
C{make bench}: the front measured against a direct connection and against
stock Twisted's L{ReverseProxyResource}, in one run on this machine.

  1. throughput of a tiny response (C{/async/delay?seconds=0}, 52 bytes) by
     wrk (one thread, 64 keep-alive connections): direct to the async
     service, through the front, through the stock proxy;
  2. client aborts: N clients start C{/async/logged?seconds=5} and leave
     once the backend has started them; how many the backend cancelled, and
     how long after the client closed (from the backend's own log line;
     the clients leave 2 ms apart);
     the same through the stock proxy;
  3. N concurrent C{/async/delay?seconds=2} held at once through the front
     (and direct, for reference): the clients connect over C{--ramp} seconds
     (1.5 by default: below the 2-second delay, so all N are in flight
     together, which the backend's own in-flight count confirms); how many
     succeed, p50/p99 completion from each request's own send, and the
     front's memory.

Prints a table, writes C{OUT/bench-TIMESTAMP.json} and C{OUT/latest.json}.
Everything runs on loopback; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from webstack.localstack import LocalStack

from .load import closeAll, holdConcurrent, openAndAbort, percentile, wrkThroughput


def stats(port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/async/stats", timeout=5) as r:
        return json.loads(r.read())["endpoints"]


def waitUntil(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def memoryKiB(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value, _ = line.split()
                fields[name.rstrip(":")] = int(value)
    return fields


class InFlightSampler(threading.Thread):
    """
    The most delayed requests the backend held at once, read from its stats:
    "N concurrent" is observed, not assumed.
    """

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, stats(self.port)["delay"]["in_flight"])
            except OSError:
                pass
            self._done.wait(0.05)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


class RSSSampler(threading.Thread):
    """
    The highest resident set size of a process while it runs.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, memoryKiB(self.pid)["VmRSS"])
            self._done.wait(0.05)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def startStockProxy(upstreamPort: int) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "webstack.bench.stockproxy", str(upstreamPort)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    return process, int(line.split()[1])


ABORT_SPACING = 0.002
"""
Seconds between two clients leaving: 200 aborts over 0.4 s.  Closing them all
in the same millisecond would measure the queue of one burst instead of the
latency of an abort.
"""


def measureAborts(viaPort, backendPort, backend, count, seconds, tag) -> dict:
    """
    Start C{count} logged delayed requests through C{viaPort}, leave once
    the backend has started them all, and see what the backend did.
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
        "cancel_latency_p50_ms": percentile(latencies, 50),
        "cancel_latency_p99_ms": percentile(latencies, 99),
        "cancel_latency_max_ms": max(latencies) if latencies else None,
    }
    if cancelled < count:
        # What the backend does with the rest: it renders them to the end.
        waitUntil(
            lambda: stats(backendPort)["logged"]["in_flight"] == 0, seconds + 5
        )
        final = stats(backendPort)["logged"]
        result["rendered_to_completion_anyway"] = final["completed"] - before["completed"]
    return result


def fmt(value, spec=".1f", unit=""):
    return "-" if value is None else f"{value:{spec}}{unit}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="webstack.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--concurrency", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--aborts", type=int, default=200)
    parser.add_argument(
        "--ramp",
        type=float,
        default=1.5,
        help="seconds over which the concurrent clients connect (below 2 s, so"
        " all of them are in flight at once)",
    )
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.concurrency + 200:
        raise SystemExit(f"open-file limit {hard} is too low for {args.concurrency} connections")

    results: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "open_file_limit": hard},
        "config": vars(args),
    }
    tiny = "/async/delay?seconds=0"
    with LocalStack(ephemeral=True) as stack:
        front = stack.services["front"].port
        backendPort = stack.services["async"].port
        backend = stack.services["async"]
        stock, stockPort = startStockProxy(backendPort)
        try:
            print("1/3 throughput of a 52-byte response (wrk, 64 connections)...", flush=True)
            for port in (backendPort, front, stockPort):  # warm up
                wrkThroughput(f"http://127.0.0.1:{port}{tiny}", 1)
            direct = wrkThroughput(f"http://127.0.0.1:{backendPort}{tiny}", args.duration)
            viaFront = wrkThroughput(f"http://127.0.0.1:{front}{tiny}", args.duration)
            viaStock = wrkThroughput(f"http://127.0.0.1:{stockPort}{tiny}", args.duration)
            base = direct["requests_per_second"] or 1.0
            results["throughput"] = {
                "direct": direct,
                "front": {**viaFront, "ratio_to_direct": viaFront["requests_per_second"] / base},
                "stock_proxy": {**viaStock, "ratio_to_direct": viaStock["requests_per_second"] / base},
            }

            print(f"2/3 {args.aborts} client aborts, through the front and the stock proxy...", flush=True)
            results["aborts"] = {
                "front": measureAborts(front, backendPort, backend, args.aborts, 5, "front"),
                "stock_proxy": measureAborts(stockPort, backendPort, backend, args.aborts, 2, "stock"),
            }

            print(
                f"3/3 {args.concurrency} concurrent 2-second requests"
                f" (clients connect over {args.ramp:g} s)...",
                flush=True,
            )
            frontPid = stack.services["front"].process.pid
            idle = memoryKiB(frontPid)["VmRSS"]
            sampler, inFlight = RSSSampler(frontPid), InFlightSampler(backendPort)
            sampler.start()
            inFlight.start()
            held = holdConcurrent(
                front, "/async/delay?seconds=2", args.concurrency, args.ramp, 30
            )
            peak, heldAtOnce = sampler.stop(), inFlight.stop()
            inFlight = InFlightSampler(backendPort)
            inFlight.start()
            heldDirect = holdConcurrent(
                backendPort, "/async/delay?seconds=2", args.concurrency, args.ramp, 30
            )
            results["concurrency"] = {
                "ramp_seconds": args.ramp,
                "front": {
                    **held.summary(),
                    "peak_in_flight_at_backend": heldAtOnce,
                    "front_rss_before_kib": idle,
                    "front_rss_peak_kib": peak,
                    "front_kib_per_held_request": round((peak - idle) / args.concurrency, 2),
                },
                "direct": {**heldDirect.summary(), "peak_in_flight_at_backend": inFlight.stop()},
            }
        finally:
            stock.terminate()
            stock.wait(10)

    t, a, c = results["throughput"], results["aborts"], results["concurrency"]
    targets = {
        "aborts: 100% cancelled through the front": a["front"]["ratio"] == 1.0,
        "aborts: cancel p99 <= 20 ms": (a["front"]["cancel_latency_p99_ms"] or 1e9) <= 20,
        "throughput: front/direct >= 0.5": t["front"]["ratio_to_direct"] >= 0.5,
        f"{args.concurrency} concurrent: all succeed": c["front"]["succeeded"] == args.concurrency,
        f"{args.concurrency} concurrent: p99 <= 2.5 s": (c["front"]["completion_p99_s"] or 1e9) <= 2.5,
    }
    results["targets"] = targets

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2)
    (out / f"bench-{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)

    print()
    print("throughput (req/s)        direct {:>9}   front {:>9} ({:.2f}x)   stock proxy {:>9} ({:.2f}x)".format(
        fmt(t["direct"]["requests_per_second"], ".0f"),
        fmt(t["front"]["requests_per_second"], ".0f"), t["front"]["ratio_to_direct"],
        fmt(t["stock_proxy"]["requests_per_second"], ".0f"), t["stock_proxy"]["ratio_to_direct"],
    ))
    for name in ("front", "stock_proxy"):
        r = a[name]
        print("aborts via {:<12}    cancelled {:>4}/{:<4} ({:.0%})   latency p50 {} p99 {} max {}{}".format(
            name, r["cancelled_by_backend"], r["aborted_by_clients"], r["ratio"],
            fmt(r["cancel_latency_p50_ms"], ".1f", " ms"), fmt(r["cancel_latency_p99_ms"], ".1f", " ms"),
            fmt(r["cancel_latency_max_ms"], ".1f", " ms"),
            f"   rendered anyway: {r['rendered_to_completion_anyway']}" if "rendered_to_completion_anyway" in r else "",
        ))
    for name in ("front", "direct"):
        r = c[name]
        print("{} x 2 s via {:<8}   ok {:>5}/{:<5} held at once {:>5}  failures {}   p50 {} p99 {} max {}".format(
            args.concurrency, name, r["succeeded"], r["sent"], r["peak_in_flight_at_backend"],
            r["failures"] or "none",
            fmt(r["completion_p50_s"], ".3f", " s"), fmt(r["completion_p99_s"], ".3f", " s"),
            fmt(r["completion_max_s"], ".3f", " s"),
        ))
    f = c["front"]
    print(f"front memory               {f['front_rss_before_kib']} KiB idle, {f['front_rss_peak_kib']} KiB peak,"
          f" {f['front_kib_per_held_request']} KiB per held request")
    print()
    for name, ok in targets.items():
        print(f"  [{'met' if ok else 'MISSED'}] {name}")
    print(f"\nwritten: {out / f'bench-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
