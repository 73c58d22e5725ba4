"""
The bench's table as a PNG: three bar charts (throughput, CPU per request,
lateness p99) above the full table and the targets.  Run as

    python -m webstack.bench.chart OUT/latest.json OUT/latest.png

by the load generator's interpreter (C{.venv-load}, which has matplotlib),
so the services' lock needs no plotting library: this module imports only
matplotlib and L{report}, which is plain Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from webstack.bench.report import COLUMNS, formatOverhead, tableRows  # noqa: E402

COLOURS = {
    "direct": "#7f7f7f",
    "front1": "#1f77b4",
    "front2": "#17becf",
    "nginx": "#2ca02c",
    "stock_proxy": "#ff7f0e",
    "stock_site": "#9467bd",
}


def _ran(results: dict) -> list[tuple[str, str]]:
    columns = results.get("columns", {})
    return [(k, label) for k, label in COLUMNS if not columns.get(k, {}).get("skipped")]


def _throughput(ax, results: dict) -> None:
    figures = results.get("throughput", {})
    ran = [(k, label) for k, label in _ran(results) if k in figures]
    values = [figures[k]["requests_per_second"] for k, _ in ran]
    bars = ax.bar([label for _, label in ran], values, color=[COLOURS[k] for k, _ in ran])
    for bar, (k, _) in zip(bars, ran):
        ratio = figures[k].get("ratio_to_direct")
        if ratio is not None:
            ax.annotate(f"{ratio:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_title("req/s, 52-byte answer (wrk 1 thread, 64 conns)", fontsize=10)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)


def _cpu(ax, results: dict) -> None:
    figures = results.get("throughput", {})
    ran = [(k, label) for k, label in _ran(results) if k in figures]
    x = range(len(ran))
    proxy = [figures[k].get("proxy_cpu_us_per_request") or 0 for k, _ in ran]
    server = [figures[k].get("server_cpu_us_per_request") or 0 for k, _ in ran]
    ax.bar([i - 0.2 for i in x], proxy, 0.4, label="proxy", color="#1f77b4")
    ax.bar([i + 0.2 for i in x], server, 0.4, label="server", color="#bbbbbb")
    ax.set_xticks(list(x), [label for _, label in ran], rotation=30, fontsize=8)
    ax.set_title("CPU µs per request", fontsize=10)
    ax.legend(fontsize=8)


def _lateness(ax, results: dict) -> None:
    lateness = results.get("lateness", {})
    counts = sorted(lateness, key=int)
    keys = [(k, label) for k, label in _ran(results) if any(k in lateness[c] for c in counts)]
    width = 0.8 / max(1, len(keys))
    for j, (key, label) in enumerate(keys):
        xs, ys = [], []
        for i, count in enumerate(counts):
            r = lateness[count].get(key)
            if r and r.get("lateness_p99_ms") is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r["lateness_p99_ms"])
        ax.bar(xs, ys, width, label=label, color=COLOURS[key])
    ax.set_xticks(range(len(counts)), [f"{int(c):,} over {int(c) / 1000:g} s" for c in counts],
                  fontsize=8)
    ax.set_title("lateness p99 (ms) of a 2-s delay", fontsize=10)
    if keys:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no lateness runs (BENCH_LATENESS empty)", ha="center",
                va="center", transform=ax.transAxes, fontsize=9)


def drawChart(results: dict, path: Path) -> None:
    figure = plt.figure(figsize=(16, 12))
    # The table and the targets below it each in a row of their own: the
    # targets' lines, drawn under the table's axes, ran into its last rows.
    grid = figure.add_gridspec(3, 3, height_ratios=[1, 1.05, 0.5])
    _throughput(figure.add_subplot(grid[0, 0]), results)
    _cpu(figure.add_subplot(grid[0, 1]), results)
    _lateness(figure.add_subplot(grid[0, 2]), results)
    ax = figure.add_subplot(grid[1, :])
    ax.axis("off")
    rows = tableRows(results)
    table = ax.table(
        cellText=[cells for _, cells in rows],
        rowLabels=[label for label, _ in rows],
        colLabels=[label for _, label in COLUMNS],
        loc="upper center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(0.75, 1.3)
    lines = [formatOverhead(results)] + [
        f"[{'met' if t['met'] else 'MISSED'}] {t['name']}: {t['shown']}"
        for t in results.get("targets", [])
    ]
    notes = figure.add_subplot(grid[2, :])
    notes.axis("off")
    notes.text(0.0, 1.0, "\n".join(lines), transform=notes.transAxes, fontsize=8,
               va="top", family="monospace")
    figure.suptitle(f"webstack bench, {results.get('when', '')}"
                    f" ({results.get('machine', {}).get('cores', '?')} cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m webstack.bench.chart RESULTS.json CHART.png", file=sys.stderr)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    drawChart(results, Path(argv[1]))
    print(f"chart: {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
