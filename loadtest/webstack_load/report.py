"""
The run's report: C{summary.json}, a PNG chart, and a short table printed at
the end.
"""

from __future__ import annotations

import json
from pathlib import Path


def writeSummary(directory: Path, summary: dict) -> Path:
    path = directory / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def writeChart(directory: Path, samples: list[dict]) -> Path | None:
    """
    In-flight requests, lateness p99 and cancellations over time.
    """
    if len(samples) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = samples[0]["t"]
    t = [s["t"] - t0 for s in samples]
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    top.plot(t, [s["in_flight"] for s in samples], label="in flight at the backends")
    top.plot(t, [s["users"] for s in samples], label="locust users", linestyle="--")
    top.set_ylabel("requests")
    top.legend(loc="upper left")
    middle.plot(t, [s["lateness_p99_ms"] for s in samples], color="tab:red")
    middle.set_ylabel("lateness p99 (ms)")
    bottom.plot(t, [s["aborts_sent"] for s in samples], label="aborts sent by clients")
    bottom.plot(t, [s["cancelled"] for s in samples], label="cancelled by backends", linestyle="--")
    bottom.set_ylabel("cumulative")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper left")
    figure.suptitle("webstack load run")
    figure.tight_layout()
    path = directory / "chart.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def table(summary: dict) -> str:
    a = summary["cancellation"]
    lines = [
        "",
        "webstack load summary",
        f"  users (peak)                 {summary['users_peak']}",
        f"  in flight at backends (peak) {summary['concurrency_peak']}",
        f"  requests / failures          {summary['requests']} / {summary['failures']}",
        f"  throughput                   {summary['throughput_rps']:.1f} req/s",
        f"  lateness p50 / p99           {summary['lateness_p50_ms']} / {summary['lateness_p99_ms']} ms",
        f"  aborts sent / observed       {a['aborts_sent']} / {a['cancellations_observed']}"
        f"  ({a['ratio']:.0%}; in flight at end {a['in_flight_at_end']},"
        f" unaccounted {a['unaccounted']})",
        f"  work done after an abort     {a['completed_after_abort']}",
    ]
    if summary.get("steps"):
        threshold = summary["settings"].get("lateness_threshold_ms")
        best = summary.get("step_threshold_users")
        for step in summary["steps"]:
            lines.append(f"  step: {step['users']:>6} users, lateness p99 {step['lateness_p99_ms']} ms")
        if best is None:
            lines.append(f"  lateness p99 stayed within {threshold} ms up to the last step")
        elif best == 0:
            lines.append(f"  lateness p99 was over {threshold} ms from the first step")
        else:
            lines.append(f"  most users with lateness p99 within {threshold} ms: {best}")
    for kind, count in summary["errors"].items():
        lines.append(f"  error x{count}: {kind}")
    lines.append(f"  verdict                      {'PASS' if summary['passed'] else 'FAIL: ' + '; '.join(summary['broken'])}")
    return "\n".join(lines)
