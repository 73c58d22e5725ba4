"""
C{make bench}: the front beside its peers, in one run, with one client and
the same backend (the async service):

  - direct: the client talks to the async service itself;
  - the front with 1 worker, and with 2 (C{WEBSTACK_FRONT_WORKERS});
  - nginx (Debian's nginx-light; one worker, keep-alive upstream);
  - stock Twisted's L{ReverseProxyResource} (L{stockproxy});
  - and, for the runtime's own cost, stock Twisted's L{Site} answering as
    the service does (L{stocksite}).

Per column: req/s of a 52-byte answer by wrk (1 thread, 64 connections) and
its ratio to direct; CPU microseconds per request of the proxy's processes
(a root and all its descendants) and of the server behind it; client aborts
(how many the backend cancelled, and how long from the client's close to
the backend's errback); lateness of N clients of a 2-second delay, one
connection each, starting over N/1000 s; the memory each held request costs.
Then the targets of issue 8, met or missed.

Prints a table, writes C{OUT/bench-STAMP.json} and C{OUT/latest.json}
(C{make bench} then draws C{OUT/latest.png} from it).  Everything runs on
loopback; every loop is bounded in count and time; every process started
here is stopped here, on errors too.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from .phases import measureAllAborts, measureLateness, measureThroughput, runtimeOverhead
from .report import (
    COLUMNS,
    MEMORY_AT,
    evaluateTargets,
    formatOverhead,
    formatTable,
    formatTargets,
    writeResults,
)
from .servers import WORKERS_ENV, startServers
from .tools import ensureTool


class Progress:
    """
    C{3/7 ...} lines, so a long run says where it is.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.step = 0
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        self.step += 1
        elapsed = time.monotonic() - self.started
        print(f"{self.step}/{self.steps} [{elapsed:4.0f} s] {text}", flush=True)

    def detail(self, text: str) -> None:
        print(f"      {text}", flush=True)


def parseArguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webstack.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results")
    parser.add_argument(
        "--duration", type=int, default=5,
        help="whole seconds per throughput run (wrk takes no fraction)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="throughput rounds over every server; each figure is its median over them",
    )
    parser.add_argument("--aborts", type=int, default=200, help="client aborts per proxy")
    parser.add_argument(
        "--lateness",
        default="2000,5000,9000",
        help="comma-separated client counts N of the lateness runs (N clients over N/1000 s;"
        " empty: none)",
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes of the lateness runs")
    args = parser.parse_args(argv)
    try:
        args.counts = sorted({int(n) for n in args.lateness.split(",") if n.strip()})
    except ValueError:
        parser.error(f"--lateness {args.lateness!r}: not a list of numbers")
    if any(n < 1 or n > 20000 for n in args.counts):
        parser.error("--lateness counts must be between 1 and 20000")
    if (
        not 1 <= args.aborts <= 5000
        or not 1 <= args.duration <= 120
        or not 1 <= args.clients <= 8
        or not 1 <= args.rounds <= 9
    ):
        parser.error("--aborts 1..5000, --duration 1..120 (whole seconds), --clients 1..8,"
                     " --rounds 1..9")
    return args


def main(argv=None) -> int:
    args = parseArguments(argv)
    counts = args.counts
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if counts and hard < 2 * max(counts) + 500:
        raise SystemExit(
            f"open-file limit {hard} is too low for {max(counts)} clients through a proxy"
            f" (needs {2 * max(counts) + 500})"
        )
    wrk, wrkNote = ensureTool("wrk", "wrk")
    if wrk is None:
        raise SystemExit(f"make bench needs wrk: {wrkNote}")
    nginxPath, nginxNote = ensureTool("nginx", "nginx-light")

    results: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "open_file_limit": hard,
            # Other work on the machine shows here: the figures are only
            # comparable between runs with a similar load before and after.
            "load_average_before": os.getloadavg(),
        },
        "config": {k: v for k, v in vars(args).items() if k != "lateness"},
        "tools": {"wrk": wrkNote, "nginx": nginxNote},
        "columns": {key: {"label": label, "skipped": None} for key, label in COLUMNS},
        "notes": [],
    }
    if nginxPath is None:
        results["columns"]["nginx"]["skipped"] = nginxNote
        print(f"nginx column skipped: {nginxNote}", flush=True)

    progress = Progress(4 + len(counts))
    with ExitStack() as cleanup:
        progress("starting the async service, the fronts (1 and 2 workers), nginx,"
                 " the stock proxy and the stock Sites...")
        backend, servers, nginxFailed = startServers(cleanup, nginxPath, hard)
        if nginxFailed:
            results["columns"]["nginx"]["skipped"] = nginxFailed
            progress.detail(f"nginx column skipped: {nginxFailed}")

        progress(f"throughput of a 52-byte answer (wrk 1 thread, 64 connections,"
                 f" {args.duration:g} s each, after 1 s of warm-up"
                 + (f"; {args.rounds} rounds, medians reported)..." if args.rounds > 1 else ")..."))
        results["throughput"] = measureThroughput(
            wrk, servers, backend.process.pid, args.duration, progress, results["notes"],
            rounds=args.rounds,
        )
        results["runtime_overhead"] = runtimeOverhead(results["throughput"])
        processes = results["throughput"]["front2"]["processes"]
        if processes < 2:
            note = (f"the 2-worker front ran as {processes} process: {WORKERS_ENV} is not"
                    " honoured by this front yet, so that column is a second 1-worker front")
            results["notes"].append(note)
            progress.detail(f"note: {note}")

        progress(f"{args.aborts} client aborts through each proxy...")
        results["aborts"] = measureAllAborts(servers, backend, args.aborts, progress, results["notes"])

        results["lateness"], memory = {}, {}
        for count in counts:
            progress(f"lateness: {count:,} clients of a 2-s delay, one connection each,"
                     f" over {count / 1000:g} s...")
            runs, measured = measureLateness(
                servers, count, args.clients, count == counts[0], progress, results["notes"]
            )
            results["lateness"][str(count)] = runs
            memory.update(measured)
        if memory:
            results["memory"] = memory
        progress("stopping everything and writing the results...")

    results["machine"]["load_average_after"] = os.getloadavg()
    results["targets"] = evaluateTargets(results)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = writeResults(results, Path(args.out), stamp)
    printReport(results)
    print(f"\nwritten: {path} and {Path(args.out) / 'latest.json'}")
    return 0


def printReport(results: dict) -> None:
    machine = results["machine"]
    print()
    print(formatTable(results))
    print()
    print(formatOverhead(results))
    memory = results.get("memory", {}).get("front1")
    if memory:
        print(
            f"front memory (1 worker, {MEMORY_AT:,} run): {memory['idle_kib']:,} KiB idle,"
            f" {memory['peak_kib']:,} KiB peak; at most {memory['peak_in_flight']:,} requests"
            f" in flight at once, {memory['kib_per_request_in_flight'] or 0:.1f} KiB per"
            " request in flight"
        )
    print(
        "machine: {} cores, load average {:.2f} before, {:.2f} after (other work on it"
        " shows in every figure)".format(
            machine["cores"], machine["load_average_before"][0], machine["load_average_after"][0]
        )
    )
    for note in results["notes"]:
        print(f"note: {note}")
    print()
    print(formatTargets(results["targets"]))


if __name__ == "__main__":
    raise SystemExit(main())
