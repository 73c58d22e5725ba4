"""
The locust suite, headless, a few seconds against the local stack with every
user class: it writes its report, sees no error, and every abort a client
sent was cancelled by the backend.  Then the same with two worker processes.

locust runs in its own environment (.venv-load, made by `make test`), as a
process: it must never share one with a Twisted service.
"""

import json
import subprocess
from pathlib import Path

import pytest

from webstack.localstack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOADPY = ROOT / ".venv-load" / "bin" / "python"


@pytest.fixture(scope="module")
def stack():
    assert LOADPY.exists(), "the load suite's environment is missing: run `make test` (or make venv-load)"
    with LocalStack(ephemeral=True) as stack:
        yield stack


def run(stack, tmp_path, *extra):
    result = subprocess.run(
        [str(LOADPY), str(ROOT / "loadtest" / "run.py"),
         "--host", stack.url("front").rstrip("/"),
         "--users", "24", "--spawn-rate", "24", "--duration", "6s",
         "--report-root", str(tmp_path), *extra,
         "--", "--stop-timeout", "8", "--cancel-seconds", "3", "--abort-after", "0.3"],
        capture_output=True, text=True, timeout=120,
    )
    [report] = list(tmp_path.iterdir())
    return result, report


def check(result, report):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((report / "summary.json").read_text())
    assert summary["failures"] == 0, summary["errors"]
    assert summary["passed"]
    books = summary["cancellation"]
    assert books["aborts_sent"] > 0
    assert books["cancellations_observed"] == books["aborts_sent"]
    assert books["unaccounted"] == 0 and books["completed_after_abort"] == 0
    for name in ("report.html", "locust_stats.csv", "chart.png"):
        assert (report / name).stat().st_size > 0
    stats = (report / "locust_stats.csv").read_text()
    for row in ("GET,/async/delay", "LATENESS,/async/delay", "CANCEL,/async/interruptible",
                "/async/stream", "/auth/ [digest]", "/session/counter", "/static/large.txt [range]"):
        assert row in stats, f"{row} not in the stats"
    assert "webstack load summary" in result.stdout
    return summary


def test_aShortHeadlessRunOfEveryUserClass(stack, tmp_path):
    summary = check(*run(stack, tmp_path))
    assert summary["users_peak"] == 24
    assert summary["lateness_p99_ms"] is not None


def test_distributedWithTwoWorkers(stack, tmp_path):
    check(*run(stack, tmp_path, "--workers", "2"))
