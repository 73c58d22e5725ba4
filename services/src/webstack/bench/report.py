"""
The bench's results as a table, the targets met or missed, and the JSON
files: pure functions of the results dictionary, so that the printed table,
the JSON and the chart (L{chart}, drawn from the JSON by another
interpreter) cannot disagree, and so that they can be tested on a made-up
result.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

COLUMNS = (
    ("direct", "direct"),
    ("front1", "front 1 worker"),
    ("front2", "front 2 workers"),
    ("nginx", "nginx"),
    ("stock_proxy", "stock proxy"),
    ("stock_site", "stock Site"),
)
"""
Every column of the table, in order: its key in the results, its label.
C{direct} is the async service itself; C{stock_site} is not a proxy but
stock Twisted's L{Site} answering as the service does (the runtime's
baseline).
"""

MEMORY_AT = 5000
"""
The lateness run during which the front's memory per held request is read.
"""

CPU_TARGET_US = 200
THROUGHPUT_TARGETS = {"front1": 0.65, "front2": 0.75}
LATENESS_TARGETS_MS = {5000: 60, 9000: 120}
ABORT_P99_TARGET_MS = 5
RUNTIME_OVERHEAD_TARGET = 1.15
MEMORY_TARGET_KIB = 10


def perRequestMicros(cpuSeconds: float | None, requests: int) -> float | None:
    if cpuSeconds is None or not requests:
        return None
    return cpuSeconds / requests * 1e6


def fmt(value, spec: str = ".0f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _lateness(summary: dict | None) -> str:
    if not summary:
        return "-"
    text = "/".join(
        fmt(summary[k], ".0f")
        for k in ("lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms")
    )
    if summary["failed"]:
        text += f" ({summary['failed']} failed)"
    return text


def tableRows(results: dict) -> list[tuple[str, list[str]]]:
    """
    The table: one row per figure, one cell per column of L{COLUMNS}
    (C{"-"} where a figure does not apply, C{"skipped"} for a column that
    did not run).
    """
    throughput = results.get("throughput", {})
    aborts = results.get("aborts", {})
    lateness = results.get("lateness", {})
    memory = results.get("memory", {})
    skipped = {k for k, c in results.get("columns", {}).items() if c.get("skipped")}

    def row(label, cell):
        return label, ["skipped" if key in skipped else cell(key) for key, _ in COLUMNS]

    def t(key, field, spec=".0f"):
        return fmt(throughput.get(key, {}).get(field), spec)

    rows = [
        row("req/s (wrk 1 thread, 64 conns)", lambda k: t(k, "requests_per_second")),
        row("ratio to direct", lambda k: t(k, "ratio_to_direct", ".2f")),
        row("ratio over the rounds, min-max",
            lambda k: "-" if k == "direct" else _spread(throughput.get(k))),
        row("proxy CPU µs/request", lambda k: t(k, "proxy_cpu_us_per_request")),
        row("server CPU µs/request", lambda k: t(k, "server_cpu_us_per_request")),
        row("wrk CPU µs/request", lambda k: t(k, "client_cpu_us_per_request")),
        row("cores busy (wrk + proxy + server)", lambda k: t(k, "cores_busy", ".2f")),
        row("processes measured", lambda k: t(k, "processes", "d")),
        row("busiest process's CPU share, per round", lambda k: _shares(throughput.get(k))),
    ]

    def abortCell(key, text):
        r = aborts.get(key)
        return text(r) if r else "-"

    rows.append(row("aborts cancelled by backend", lambda k: abortCell(
        k, lambda r: f"{r['cancelled_by_backend']}/{r['aborted_by_clients']}")))
    rows.append(row("abort → errback p50/p99 ms", lambda k: abortCell(
        k, lambda r: f"{fmt(r['cancel_latency_p50_ms'], '.1f')}/{fmt(r['cancel_latency_p99_ms'], '.1f')}")))
    for count in sorted(lateness, key=int):
        runs = lateness[count]
        rows.append(row(
            f"{int(count):,} × 2 s over {int(count) / 1000:g} s: late p50/p99/max ms",
            lambda k, runs=runs: _lateness(runs.get(k)),
        ))
    if memory:
        rows.append(row(
            f"KiB per held request ({MEMORY_AT:,} run)",
            lambda k: fmt(memory.get(k, {}).get("kib_per_held_request"), ".1f"),
        ))
    return rows


def _spread(figure: dict | None) -> str:
    """
    The lowest and highest ratio to direct of a column's rounds (C{"-"} with
    fewer than two): how far one round alone could have been off.
    """
    rounds = [r["ratio_to_direct"] for r in (figure or {}).get("rounds", [])
              if r.get("ratio_to_direct") is not None]
    if len(rounds) < 2:
        return "-"
    return f"{min(rounds):.2f}-{max(rounds):.2f}"


def coresForRatio(figure: dict | None, ratio: float) -> float | None:
    """
    The cores that wrk, the proxy and the backend together would keep busy
    at C{ratio} times direct's req/s, at the CPU per request they spent in
    this run: in each round, C{ratio} over the round's own ratio times the
    cores they kept busy; the median of the rounds.  At least: the kernel's
    work for loopback traffic that it does outside the processes (softirq)
    is not in their counts.  More than the machine has means that, at these
    costs, the ratio is out of reach however the work is scheduled: the CPU
    per request has to fall first.
    """
    needed = [
        ratio / r["ratio_to_direct"] * r["cores_busy"]
        for r in (figure or {}).get("rounds", [])
        if r.get("ratio_to_direct") and r.get("cores_busy") is not None
    ]
    return statistics.median_low(needed) if needed else None


def _shares(figure: dict | None) -> str:
    """
    Each round's share of the proxy's CPU used by its busiest process
    (C{"-"} for a column of one process): whether its workers split the
    work.
    """
    shares = [r.get("busiest_share") for r in (figure or {}).get("rounds", [])]
    if not any(share is not None for share in shares):
        return "-"
    return "/".join(fmt(share, ".2f") for share in shares)


def formatTable(results: dict) -> str:
    rows = tableRows(results)
    labels = [label for _, label in COLUMNS]
    first = max(len(r[0]) for r in rows)
    widths = [
        max(len(labels[i]), *(len(r[1][i]) for r in rows)) for i in range(len(labels))
    ]
    lines = ["  ".join([" " * first, *(l.rjust(w) for l, w in zip(labels, widths))])]
    for label, cells in rows:
        lines.append("  ".join([label.ljust(first), *(c.rjust(w) for c, w in zip(cells, widths))]))
    return "\n".join(lines)


def _target(name: str, value, limit, met: bool, unit: str = "", spec=".1f") -> dict:
    shown = fmt(value, spec, unit)
    return {"name": name, "value": value, "limit": limit, "met": bool(met), "shown": shown}


def evaluateTargets(results: dict) -> list[dict]:
    """
    The targets of issue 8 that this run measured, each met or not.  A
    figure that could not be measured counts as missed.
    """
    targets = []
    throughput = results.get("throughput", {})
    front1 = throughput.get("front1", {})
    cpu = front1.get("proxy_cpu_us_per_request")
    targets.append(_target(
        f"front CPU per request <= {CPU_TARGET_US} µs (1 worker)", cpu, CPU_TARGET_US,
        cpu is not None and cpu <= CPU_TARGET_US, " µs", ".0f"))
    cores = results.get("machine", {}).get("cores")
    for key, ratio in THROUGHPUT_TARGETS.items():
        value = throughput.get(key, {}).get("ratio_to_direct")
        workers = "1 worker" if key == "front1" else "2 workers"
        target = _target(
            f"front throughput >= {ratio:.2f}x direct ({workers})", value, ratio,
            value is not None and value >= ratio, "x", ".2f")
        needed = coresForRatio(throughput.get(key), ratio)
        target["cores_needed"] = needed
        if needed is not None:
            target["shown"] += (
                f" ({ratio:.2f}x would keep at least {needed:.2f} cores busy at this run's CPU"
                f" per request; the machine has {cores if cores is not None else '?'})"
            )
        targets.append(target)
    for count, limit in LATENESS_TARGETS_MS.items():
        runs = results.get("lateness", {}).get(str(count))
        if runs is None:
            continue
        for key in ("front1", "front2"):
            r = runs.get(key) or {}
            p99 = r.get("lateness_p99_ms")
            workers = "1 worker" if key == "front1" else "2 workers"
            targets.append(_target(
                f"{count:,} clients over {count / 1000:g} s: all answered, lateness p99"
                f" <= {limit} ms (front, {workers})",
                p99, limit,
                p99 is not None and p99 <= limit and r.get("failed") == 0, " ms", ".0f"))
    for key in ("front1", "front2"):
        a = results.get("aborts", {}).get(key)
        if a is None:
            continue
        p99 = a.get("cancel_latency_p99_ms")
        workers = "1 worker" if key == "front1" else "2 workers"
        targets.append(_target(
            f"aborts: 100% cancelled, abort to errback p99 <= {ABORT_P99_TARGET_MS} ms"
            f" (front, {workers})",
            p99, ABORT_P99_TARGET_MS,
            a["ratio"] == 1.0 and p99 is not None and p99 <= ABORT_P99_TARGET_MS,
            f" ms, {a['ratio']:.0%} cancelled"))
    overhead = results.get("runtime_overhead", {}).get("ratio")
    targets.append(_target(
        f"runtime overhead: async service CPU/request <= {RUNTIME_OVERHEAD_TARGET:.2f}x"
        " stock Site's",
        overhead, RUNTIME_OVERHEAD_TARGET,
        overhead is not None and overhead <= RUNTIME_OVERHEAD_TARGET, "x", ".2f"))
    memory = results.get("memory", {}).get("front1", {}).get("kib_per_held_request")
    if "memory" in results:
        targets.append(_target(
            f"front memory <= {MEMORY_TARGET_KIB} KiB per held request"
            f" ({MEMORY_AT:,} run, 1 worker)",
            memory, MEMORY_TARGET_KIB,
            memory is not None and memory <= MEMORY_TARGET_KIB, " KiB"))
    return targets


def formatTargets(targets: list[dict]) -> str:
    return "\n".join(
        f"  [{'met' if t['met'] else 'MISSED'}] {t['name']}: {t['shown']}" for t in targets
    )


def formatOverhead(results: dict) -> str:
    o = results.get("runtime_overhead") or {}
    text = (
        f"runtime overhead: async service {fmt(o.get('service_cpu_us_per_request'))} µs/request,"
        f" stock Site {fmt(o.get('stock_site_cpu_us_per_request'))} µs/request:"
        f" {fmt(o.get('ratio'), '.2f', 'x')}"
    )
    if o.get("stock_site_logging_cpu_us_per_request") is not None:
        text += (
            f"\n  (stock Site writing its access line as twistd does:"
            f" {fmt(o['stock_site_logging_cpu_us_per_request'])} µs/request,"
            f" service {fmt(o.get('ratio_to_logging_site'), '.2f', 'x')} of it)"
        )
    return text


def writeResults(results: dict, out: Path, stamp: str) -> Path:
    """
    C{OUT/bench-STAMP.json} and C{OUT/latest.json}; returns the first.
    """
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    path = out / f"bench-{stamp}.json"
    path.write_text(text)
    (out / "latest.json").write_text(text)
    return path
