"""
The bench's three measuring phases over every server, one after the other
(never two at once: each has the two cores to itself, with its client):
throughput and CPU per request, client aborts, lateness and memory.
"""

from __future__ import annotations

import statistics
import threading
import time

from .aborts import measureAborts
from .lateness import runLateness
from .load import wrkThroughput
from .proctree import CPUMeter, processTree, rssKiB
from .report import MEMORY_AT, perRequestMicros

TINY = "/async/delay?seconds=0"
HELD = "/async/delay?seconds=2"
SERVERS_ONLY = ("direct", "stock_site", "stock_site_logged")
"""
Columns whose process is the server itself, not a proxy in front of the
backend.
"""
ABORT_SECONDS = {"front1": 5, "front2": 5, "nginx": 5, "stock_proxy": 2}
"""
The proxies the aborts go through, and how long the aborted request would
have taken (the stock proxy renders every one to the end: 2 s is enough).
"""
MULTI_PROCESS = ("front2",)
"""
Columns whose proxy spreads the requests over several processes: each
round reports the busiest one's share of their CPU.  The kernel hands a new
connection to whichever worker accepts first; on two cores busy with wrk
and the backend, one worker often takes all 64 of wrk's connections (a
share near 1), and the column then measures one worker with the workers'
own costs.
"""
LATENESS_COLUMNS = ("direct", "front1", "front2", "nginx", "stock_proxy")
STOCK_LATENESS_MAX = 2000
"""
The stock proxy (no pool, listen backlog 50) runs only the smallest
lateness run, and only up to this many clients.
"""
CLIENT_LAG_NOTE_MS = 20
"""
A lateness run whose clients started more than this (p99) behind their
schedule gets a note: the load generator itself was short of CPU.
"""


def measureThroughput(wrk, servers, backendPid, seconds, progress, notes, rounds) -> dict:
    """
    wrk against every server in turn, with the CPU of its process tree
    (and of the backend behind it) read before and after; the whole turn
    C{rounds} times, so every column is measured beside the others in each
    round, and each figure is its median over the rounds (L{medianOfRounds}).
    """
    measured = []
    for number in range(1, rounds + 1):
        if rounds > 1:
            progress.detail(f"round {number} of {rounds}:")
        measured.append(
            _throughputRound(wrk, servers, backendPid, seconds, progress, notes, number)
        )
    return medianOfRounds(measured)


def _throughputRound(wrk, servers, backendPid, seconds, progress, notes, number) -> dict:
    figures = {}
    for key, (port, root) in servers.items():
        url = f"http://127.0.0.1:{port}{TINY}"
        wrkThroughput(wrk, url, 1)  # warm-up
        time.sleep(0.3)
        roots = {"server": root} if key in SERVERS_ONLY else {"proxy": root, "server": backendPid}
        meter = CPUMeter(roots)
        meter.start()
        figure = wrkThroughput(wrk, url, seconds)
        used = meter.stop()
        figure["processes"] = len(processTree(root))
        figure["cpu_seconds"] = used
        figure["proxy_cpu_us_per_request"] = perRequestMicros(used.get("proxy"), figure["requests"])
        figure["server_cpu_us_per_request"] = perRequestMicros(used["server"], figure["requests"])
        figure["client_cpu_us_per_request"] = perRequestMicros(
            figure["client_cpu_seconds"], figure["requests"]
        )
        allCPU = sum(used.values()) + figure["client_cpu_seconds"]
        figure["cpu_us_per_request"] = perRequestMicros(allCPU, figure["requests"])
        figure["cores_busy"] = allCPU / seconds
        if key in MULTI_PROCESS:
            figure["busiest_share"] = meter.busiestShare("proxy")
        figures[key] = figure
        if figure["non_2xx"] or figure["socket_errors"] != "none":
            notes.append(
                f"throughput via {key} (round {number}): {figure['non_2xx']} answers not 2xx,"
                f" socket errors:"
                f" {figure['socket_errors']} (req/s counts every answer)"
            )
        proxyCPU = figure["proxy_cpu_us_per_request"]
        progress.detail(
            f"{key}: {figure['requests_per_second']:,.0f} req/s"
            + (f", proxy {proxyCPU:.0f} µs/request" if proxyCPU is not None else "")
            + f", server {figure['server_cpu_us_per_request'] or 0:.0f} µs/request"
            + (f", its busiest process {figure['busiest_share']:.0%} of its CPU"
               if figure.get("busiest_share") is not None else "")
            + (f" ({figure['error']})" if "error" in figure else "")
        )
        time.sleep(0.5)
    base = figures["direct"]["requests_per_second"] or None
    for figure in figures.values():
        figure["ratio_to_direct"] = figure["requests_per_second"] / base if base else None
    return figures


ROUND_FIGURES = (
    "requests_per_second",
    "ratio_to_direct",
    "proxy_cpu_us_per_request",
    "server_cpu_us_per_request",
    "client_cpu_us_per_request",
    "cpu_us_per_request",
    "cores_busy",
    "busiest_share",
)
"""
The figures of a throughput round that are reported as their median over
the rounds, each on its own (the lower middle one of an even count: always
a figure some round measured).
"""


def medianOfRounds(rounds: list[dict]) -> dict:
    """
    One figure per column from several rounds: each of L{ROUND_FIGURES} is
    its median over the rounds (a ratio is a ratio within one round: the
    median of those, not a ratio of medians); the counts (requests, non-2xx
    answers, CPU seconds, an error) are those of the round whose req/s is
    the median; every round's own figures are kept under C{"rounds"}.  With
    one round, that round as it is, with its figures under C{"rounds"} too.
    """
    combined = {}
    for key in rounds[0]:
        measured = [r[key] for r in rounds if key in r]
        middle = sorted(measured, key=lambda f: f["requests_per_second"])[(len(measured) - 1) // 2]
        figure = dict(middle)
        for name in ROUND_FIGURES:
            values = [f[name] for f in measured if f.get(name) is not None]
            figure[name] = statistics.median_low(values) if values else None
        figure["rounds"] = [{name: f.get(name) for name in ROUND_FIGURES} for f in measured]
        combined[key] = figure
    return combined


def runtimeOverhead(throughput: dict) -> dict:
    """
    The async service's CPU per request against stock Site's: plain (the
    target's baseline), and writing its access line as twistd would.
    """
    service = throughput["direct"]["server_cpu_us_per_request"]
    plain = throughput["stock_site"]["server_cpu_us_per_request"]
    logged = throughput.get("stock_site_logged", {}).get("server_cpu_us_per_request")
    return {
        "service_cpu_us_per_request": service,
        "stock_site_cpu_us_per_request": plain,
        "ratio": service / plain if service and plain else None,
        "stock_site_logging_cpu_us_per_request": logged,
        "ratio_to_logging_site": service / logged if service and logged else None,
    }


def measureAllAborts(servers, backend, count, progress, notes) -> dict:
    results = {}
    for key, seconds in ABORT_SECONDS.items():
        if key in servers:
            results[key] = r = measureAborts(servers[key][0], backend.port, backend, count, seconds, key)
            if not r["all_started_before_abort"]:
                notes.append(f"aborts via {key}: not every request had reached the backend"
                             " when the clients left (after 15 s)")
            p99 = r["cancel_latency_p99_ms"]
            progress.detail(
                f"{key}: {r['cancelled_by_backend']}/{count} cancelled"
                + (f", abort to errback p99 {p99:.1f} ms" if p99 is not None else "")
            )
    return results


class RSSSampler(threading.Thread):
    """
    The highest resident memory of a process tree while it runs (sampled
    every 0.1 s).
    """

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rssKiB(self.root))
            self._done.wait(0.1)

    def stop(self) -> int:
        self._done.set()
        self.join(5)
        return max(self.peak, rssKiB(self.root))


def measureLateness(servers, count, clients, first, progress, notes) -> tuple[dict, dict]:
    """
    C{count} clients through every server in turn, with its memory
    sampled.

    @param first: whether this is the smallest run (the stock proxy's).
    @return: each column's lateness summary, and (for the L{MEMORY_AT}
        run) each column's memory per held request.
    """
    runs, memory = {}, {}
    for key in LATENESS_COLUMNS:
        if key not in servers:
            continue
        if key == "stock_proxy" and (not first or count > STOCK_LATENESS_MAX):
            continue
        port, root = servers[key]
        idle = rssKiB(root)
        sampler = RSSSampler(root)
        sampler.start()
        try:
            run = runLateness(port, HELD, count, processes=clients)
        finally:
            peak = sampler.stop()
        runs[key] = summary = run.summary()
        if count == MEMORY_AT:
            held = summary["peak_in_flight"]
            memory[key] = {
                "idle_kib": idle,
                "peak_kib": peak,
                "kib_per_held_request": (peak - idle) / count,
                "peak_in_flight": held,
                "kib_per_request_in_flight": (peak - idle) / held if held else None,
            }
        lag = summary["client_start_lag_p99_ms"] or 0
        if lag > CLIENT_LAG_NOTE_MS:
            notes.append(
                f"lateness {count} via {key}: the clients themselves started late (p99"
                f" {lag:.0f} ms behind their schedule): the machine was short of CPU, so"
                " that run's figures include the load generator's own delay"
            )
        progress.detail(
            f"{key}: {summary['succeeded']}/{count} answered, late p50/p99/max"
            f" {summary['lateness_p50_ms'] or 0:.0f}/{summary['lateness_p99_ms'] or 0:.0f}"
            f"/{summary['lateness_max_ms'] or 0:.0f} ms, client start lag p99 {lag:.0f} ms"
        )
        time.sleep(1)
    return runs, memory
