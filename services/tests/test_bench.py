"""
The pure pieces of C{make bench}: CPU accounting over a process tree, the
nginx configuration, percentiles, wrk's report, and the table, targets and
JSON made from a result.  Nothing here asserts on timing: the one test with
processes checks that CPU a grandchild burns is counted in its ancestor's
tree, not how fast it burns.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from webstack.bench import proctree
from webstack.bench.lateness import LatenessRun, peakOverlap
from webstack.bench.instructions import main as instructionsMain
from webstack.bench.instructions import totalInstructions
from webstack.bench.load import parseWrk, percentile, runMeasured
from webstack.bench.nginx import nginxConfig
from webstack.bench.peers import PeerProcess
from webstack.bench.phases import measureThroughput, medianOfRounds
from webstack.bench.report import (
    COLUMNS,
    coresForRatio,
    evaluateTargets,
    formatTable,
    formatTargets,
    tableRows,
    writeResults,
)

from .support import requiredTool

BURN = 0.3
"""
CPU seconds the grandchild burns (measured by its own process_time, so the
amount does not depend on how busy the machine is).
"""

PARENT = textwrap.dedent(
    f"""
    import subprocess, sys
    burner = subprocess.Popen([sys.executable, "-c", '''
    import os, sys, time
    start = time.process_time()
    while time.process_time() - start < {BURN}:
        pass
    print("burnt", os.getpid(), flush=True)
    time.sleep(60)
    '''])
    burner.wait()
    print("reaped", flush=True)
    sys.stdin.read()
    """
)


def readLine(process, timeout=60.0) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "no line from the test's child process"
    return process.stdout.readline()


@contextmanager
def burningTree():
    """
    The L{PARENT} tree, started; at the end its burner is killed and the
    parent reaped, whatever the test did.  C{tree.burner} is for the test to
    set once the burner has said its pid.
    """
    tree = SimpleNamespace(
        parent=subprocess.Popen(
            [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        ),
        burner=None,
    )
    try:
        yield tree
    finally:
        if tree.burner is not None:
            try:
                os.kill(tree.burner, signal.SIGKILL)
            except ProcessLookupError:
                pass
        tree.parent.kill()
        tree.parent.communicate(timeout=10)


def test_treeCPUIncludesDescendantsAliveAndReaped():
    """
    A grandchild's CPU counts in the tree while it runs (as a front worker's
    does), and still counts once its parent has reaped it (cutime).
    """
    with burningTree() as tree:
        parent = tree.parent
        words = readLine(parent).split()
        assert words[0] == "burnt"
        tree.burner = burner = int(words[1])
        assert burner in proctree.processTree(parent.pid)
        own = proctree.readStat(parent.pid).ticks / proctree.CLOCK_TICKS
        alive = proctree.cpuSeconds(parent.pid)
        assert alive - own >= BURN * 0.8

        os.kill(burner, signal.SIGTERM)
        assert readLine(parent).strip() == "reaped"
        assert proctree.processTree(parent.pid) == [parent.pid]
        assert proctree.cpuSeconds(parent.pid) >= alive


def test_theCPUMeterSaysHowTheWorkWasSharedAndCountsAReapedProcessOnce():
    """
    A tree whose one process did all the work: its busiest process's share
    is near 1 (as a two-worker front's is when one worker took every
    connection).  Once that process is reaped, its CPU counts in its
    parent's, once.
    """
    with burningTree() as tree:
        parent = tree.parent
        meter = proctree.CPUMeter({"tree": parent.pid})
        meter.start()
        tree.burner = burner = int(readLine(parent).split()[1])
        used = meter.stop()["tree"]
        assert used >= BURN * 0.8
        assert len(meter.byProcess["tree"]) == 2
        assert meter.byProcess["tree"][0] >= BURN * 0.8
        assert meter.busiestShare("tree") > 0.6
        assert proctree.CPUMeter({"tree": parent.pid}).busiestShare("tree") is None

        meter.start()
        os.kill(burner, signal.SIGTERM)
        assert readLine(parent).strip() == "reaped"
        # What it burnt before start() is not counted again.
        assert meter.stop()["tree"] < BURN * 0.5


def test_readStatOfAGoneProcess():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    assert proctree.readStat(child.pid) is None
    assert proctree.processTree(child.pid) == []
    assert proctree.cpuSeconds(child.pid) == 0


def test_stopTreeStopsTheRootAndItsChildren():
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
         "print('started', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert readLine(parent).strip() == "started"
        members = proctree.processTree(parent.pid)
        assert len(members) == 2
        # The child outlives its parent's SIGTERM: it gets SIGKILL after the grace.
        proctree.stopTree(parent.pid, grace=0.5)
        parent.wait(10)
        left = [proctree.readStat(pid) for pid in members]
        assert all(s is None or s.state == "Z" for s in left), left
    finally:
        parent.kill()
        parent.communicate(timeout=10)


def test_nginxConfig(tmp_path):
    text = nginxConfig(str(tmp_path), 12345, 23456, openFiles=20000)
    assert "worker_processes 1;" in text
    assert "daemon off;" in text
    assert f"pid {tmp_path}/nginx.pid;" in text
    assert "listen 127.0.0.1:12345 backlog=1024;" in text
    assert "server 127.0.0.1:23456;" in text
    assert "keepalive 64;" in text
    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text
    assert "proxy_ignore_client_abort off;" in text
    assert "user " not in text
    assert "user alice staff;" in nginxConfig(str(tmp_path), 1, 2, user="alice staff")
    # Nothing outside the temporary directory is written to.
    for line in text.splitlines():
        if line.strip().startswith(("pid", "error_log", "access_log")) or "_temp_path" in line:
            assert str(tmp_path) in line


@pytest.mark.integration
def test_nginxAcceptsTheConfig(tmp_path):
    """
    nginx itself accepts the configuration the bench writes (installed as
    C{make bench} installs it; skipped only where it cannot be).
    """
    nginx = requiredTool("nginx", "nginx-light")
    conf = tmp_path / "nginx.conf"
    user = "root root" if os.geteuid() == 0 else None
    conf.write_text(nginxConfig(str(tmp_path), 12345, 23456, openFiles=1024, user=user))
    result = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", f"{tmp_path}/error.log"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr



def test_totalInstructionsReadsTheDumpsTotals():
    dump = "version: 1\ncreator: callgrind-3.19.0\npid: 42\ncmd: python\npart: 1\n" \
        "events: Ir\nsummary: 123456\n\nfl=(1) x.c\nfn=(1) f\n0 3\n\ntotals: 123456\n"
    assert totalInstructions(dump) == 123456
    assert totalInstructions("events: Ir\nsummary: 77\n") == 77
    with pytest.raises(ValueError):
        totalInstructions("events: Ir\n")


@pytest.mark.integration
def test_instructionsPerProxiedRequest(tmp_path, capsys):
    """
    C{make bench-instructions}, small: the front (one worker), one worker of
    a two-worker front and the async service, each under callgrind, count
    instructions for an exact number of requests, every one answered 200,
    and the figures are written.
    """
    requiredTool("valgrind", "valgrind")
    assert instructionsMain(["--out", str(tmp_path), "--requests", "200", "--warmup", "50",
                             "--connections", "4"]) == 0
    [written] = tmp_path.glob("instructions-*.json")
    results = json.loads(written.read_text())
    for key in ("front", "worker", "direct"):
        assert results[key]["requests"] == 200
        # Python serving a request runs hundreds of thousands of
        # instructions; a count near zero would mean nothing was measured.
        assert 50_000 < results[key]["per_request"] < 20_000_000
    assert results["front_per_direct"] == round(
        results["front"]["per_request"] / results["direct"]["per_request"], 3)
    assert results["worker_per_front"] == round(
        results["worker"]["per_request"] / results["front"]["per_request"], 3)
    assert "instructions per request" in capsys.readouterr().out

def test_percentile():
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(list(reversed(values)), 1) == 1


def test_parseWrk():
    report = textwrap.dedent(
        """\
        Running 5s test @ http://127.0.0.1:1234/async/delay?seconds=0
          1 threads and 64 connections
          Thread Stats   Avg      Stdev     Max   +/- Stdev
            Latency    11.21ms    2.10ms  40.00ms   90.00%
            Req/Sec     5.71k   300.00     6.10k    80.00%
          28512 requests in 5.00s, 4.70MB read
          Non-2xx or 3xx responses: 3
        Requests/sec:   5702.40
        Transfer/sec:    962.54KB
        """
    )
    figures = parseWrk(report)
    assert figures == {
        "requests_per_second": 5702.4,
        "requests": 28512,
        "non_2xx": 3,
        "socket_errors": "none",
    }


def test_theBenchTakesWholeSecondsAsWrkDoes(capsys):
    """
    wrk refuses C{-d1.5s} (it prints its usage and measures nothing), so
    the bench says so at once rather than reporting rounds of no requests.
    """
    from webstack.bench.__main__ import parseArguments

    assert parseArguments(["--duration", "7"]).duration == 7
    for bad in ("1.5", "0", "121"):
        with pytest.raises(SystemExit):
            parseArguments(["--duration", bad])
        assert "--duration" in capsys.readouterr().err


def test_runMeasuredCountsTheCPUOfTheProcessNotItsTime():
    """
    What a client process used of the cores: its CPU, not the time it ran.
    """
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint('done')"
    out, cpu = runMeasured([sys.executable, "-c", busy], timeout=30)
    assert out == "done\n"
    assert 0.3 <= cpu < 1.0
    out, cpu = runMeasured([sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit('bye')"],
                           timeout=30)
    assert out == "bye\n"  # standard error too
    assert cpu < 0.25


def test_runMeasuredKillsAProcessPastItsTimeout():
    started = time.monotonic()
    out, cpu = runMeasured([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert time.monotonic() - started < 10
    assert cpu < 0.25


QUIET = SimpleNamespace(detail=lambda text: None)  # the bench's progress, unsaid


def test_aThroughputRoundCountsWrksCPUAndTheCoresBusy():
    """
    A real round: wrk against a stock Site for two seconds.  wrk's own CPU is
    measured beside the server's, and the cores busy are all of it over the
    run's time.
    """
    wrk = requiredTool("wrk", "wrk")
    seconds = 2.0
    site = PeerProcess("webstack.bench.stocksite")
    try:
        pid = site.process.pid
        figures = measureThroughput(wrk, {"direct": (site.port, pid)}, pid, seconds, QUIET, [], 1)
    finally:
        site.stop()
    direct = figures["direct"]
    assert direct["requests"] > 100, direct
    client, server = direct["client_cpu_us_per_request"], direct["server_cpu_us_per_request"]
    assert client > 0 and server > 0
    assert direct["cpu_us_per_request"] == pytest.approx(client + server, rel=1e-6)
    assert 0.05 < direct["cores_busy"] <= (os.cpu_count() or 1) + 0.2
    assert direct["cores_busy"] == pytest.approx(
        direct["cpu_us_per_request"] * direct["requests"] / 1e6 / seconds, rel=1e-6
    )
    assert direct["rounds"][0]["cores_busy"] == direct["cores_busy"]


def test_peakOverlapAndLatenessSummary():
    assert peakOverlap([0, 1, 2], [3, 4, None]) == 2
    run = LatenessRun(count=3, delay=2.0, rate=1000.0, starts=[0.0, 0.001, 0.002],
                      ends=[2.010, 2.021, None], lags=[0.0, 0.001, 0.0],
                      failures={"timeout": 1})
    summary = run.summary()
    assert summary["succeeded"] == 2 and summary["failed"] == 1
    assert summary["lateness_p50_ms"] == pytest.approx(10)
    assert summary["lateness_max_ms"] == pytest.approx(20)
    assert summary["peak_in_flight"] == 2


def fakeResults(frontCPU=150.0) -> dict:
    def throughput(rate, proxy, server, processes=1):
        return {"requests_per_second": rate, "requests": int(rate * 5), "ratio_to_direct": rate / 8000,
                "proxy_cpu_us_per_request": proxy, "server_cpu_us_per_request": server,
                "processes": processes}

    def late(p99, failed=0):
        return {"clients": 5000, "succeeded": 5000 - failed, "failed": failed, "failures": {},
                "lateness_p50_ms": 2.0, "lateness_p99_ms": p99, "lateness_max_ms": p99 + 5}

    def aborts(cancelled, p99):
        return {"aborted_by_clients": 200, "cancelled_by_backend": cancelled, "ratio": cancelled / 200,
                "cancel_latency_p50_ms": p99 / 2 if p99 else None, "cancel_latency_p99_ms": p99}

    return {
        "when": "2026-01-01T00:00:00+00:00",
        "machine": {"cores": 2},
        "columns": {k: {"label": label, "skipped": "nginx is not installed" if k == "nginx" else None}
                    for k, label in COLUMNS},
        "throughput": {
            "direct": throughput(8000, None, 110),
            "front1": throughput(5600, frontCPU, 112),
            "front2": throughput(5000, 190, 130, processes=3),
            "stock_proxy": throughput(3500, 200, 140),
            "stock_site": throughput(9000, None, 100),
        },
        "runtime_overhead": {"service_cpu_us_per_request": 110, "stock_site_cpu_us_per_request": 100,
                             "ratio": 1.1},
        "aborts": {"front1": aborts(200, 0.8), "front2": aborts(200, 7.0), "stock_proxy": aborts(0, None)},
        "lateness": {
            "2000": {"direct": late(3), "front1": late(20), "front2": late(10), "stock_proxy": late(5)},
            "5000": {"direct": late(4), "front1": late(50), "front2": late(70, failed=2)},
        },
        "memory": {"front1": {"idle_kib": 50000, "peak_kib": 90000, "kib_per_held_request": 8.0}},
        "notes": [],
    }


def test_tableShape():
    results = fakeResults()
    rows = tableRows(results)
    assert all(len(cells) == len(COLUMNS) for _, cells in rows)
    labels = [label for label, _ in rows]
    assert labels[0].startswith("req/s")
    assert any(label.startswith("2,000 ×") for label in labels)
    assert any(label.startswith("5,000 ×") for label in labels)
    nginx = [k for k, _ in COLUMNS].index("nginx")
    assert all(cells[nginx] == "skipped" for _, cells in rows)
    lateness = dict(rows)[next(label for label in labels if label.startswith("5,000"))]
    assert lateness[[k for k, _ in COLUMNS].index("front2")] == "2/70/75 (2 failed)"
    text = formatTable(results)
    assert len(text.splitlines()) == len(rows) + 1


def test_medianOfRoundsTakesEachFigureOnItsOwnAndKeepsEveryRound():
    def figure(rps, ratio, proxy, requests):
        return {
            "requests_per_second": rps,
            "ratio_to_direct": ratio,
            "proxy_cpu_us_per_request": proxy,
            "server_cpu_us_per_request": 70.0,
            "client_cpu_us_per_request": 12.0,
            "cpu_us_per_request": proxy + 82.0,
            "cores_busy": rps * (proxy + 82.0) / 1e6,
            "busiest_share": None,
            "requests": requests,
        }

    rounds = [
        {"front1": figure(5000.0, 0.40, 210.0, 25000)},
        {"front1": figure(6000.0, 0.50, 150.0, 30000)},
        {"front1": figure(4000.0, 0.45, 190.0, 20000)},
    ]
    combined = medianOfRounds(rounds)["front1"]
    assert combined["requests_per_second"] == 5000.0
    # Each ratio is a ratio within its round: the median of those.
    assert combined["ratio_to_direct"] == 0.45
    # Each figure on its own: not the median req/s round's 210.
    assert combined["proxy_cpu_us_per_request"] == 190.0
    assert combined["cores_busy"] == pytest.approx(6000.0 * 232.0 / 1e6)  # of 1.46, 1.392, 1.088
    # The counts are the round whose req/s is the median.
    assert combined["requests"] == 25000
    assert [r["ratio_to_direct"] for r in combined["rounds"]] == [0.40, 0.50, 0.45]
    rows = dict(tableRows({"throughput": {"front1": combined}}))
    assert rows["ratio over the rounds, min-max"][[k for k, _ in COLUMNS].index("front1")] == (
        "0.40-0.50"
    )
    assert medianOfRounds(rounds[:1])["front1"]["rounds"] == [
        {k: rounds[0]["front1"][k] for k in combined["rounds"][0]}
    ]


def test_theTableSaysHowEachRoundsWorkersSharedTheWork():
    """
    Each round's share of the two-worker front's CPU used by its busiest
    worker: 0.98 is one worker doing it all, which the ratio alone would
    not tell.
    """
    def figure(share):
        return {"requests_per_second": 5000.0, "ratio_to_direct": 0.5, "requests": 1,
                "busiest_share": share}

    combined = medianOfRounds([
        {"front1": figure(None), "front2": figure(0.98)},
        {"front1": figure(None), "front2": figure(0.514)},
    ])
    assert combined["front2"]["busiest_share"] == 0.514
    rows = dict(tableRows({"throughput": combined}))
    keys = [k for k, _ in COLUMNS]
    cells = rows["busiest process's CPU share, per round"]
    assert cells[keys.index("front2")] == "0.98/0.51"
    assert cells[keys.index("front1")] == "-"


def test_theMedianOfAnEvenCountIsAFigureSomeRoundMeasured():
    rounds = [
        {"front1": {"requests_per_second": 0.0, "ratio_to_direct": 0.0, "requests": 0,
                    "error": "connection refused"}},
        {"front1": {"requests_per_second": 12000.0, "ratio_to_direct": 0.9, "requests": 60000}},
    ]
    combined = medianOfRounds(rounds)["front1"]
    # Never 6,000 req/s beside the counts of a round that served none.
    assert combined["requests_per_second"] == 0.0
    assert combined["ratio_to_direct"] == 0.0
    assert combined["requests"] == 0 and combined["error"] == "connection refused"


def test_targets():
    targets = {t["name"]: t for t in evaluateTargets(fakeResults())}
    met = {name for name, t in targets.items() if t["met"]}
    assert "front CPU per request <= 200 µs (1 worker)" in met
    assert "front throughput >= 0.65x direct (1 worker)" in met  # 0.70
    assert "front throughput >= 0.75x direct (2 workers)" not in met  # 0.625
    five = [n for n in targets if n.startswith("5,000 clients")]
    assert len(five) == 2
    assert [targets[n]["met"] for n in five] == [True, False]  # 2 workers: failures
    assert not any(n.startswith("9,000") for n in targets)  # not run
    aborts = [n for n in targets if n.startswith("aborts")]
    assert [targets[n]["met"] for n in aborts] == [True, False]
    assert all(isinstance(t["met"], bool) for t in targets.values())
    slow = {t["name"]: t for t in evaluateTargets(fakeResults(frontCPU=None))}
    assert not slow["front CPU per request <= 200 µs (1 worker)"]["met"]
    lines = formatTargets(evaluateTargets(fakeResults())).splitlines()
    assert all(line.startswith(("  [met] ", "  [MISSED] ")) for line in lines)


def test_aMissedThroughputTargetSaysTheCoresItWouldTake():
    """
    0.75x direct, at the CPU per request each round spent: the round's
    cores busy times 0.75 over the ratio it reached; the median of the
    rounds, said beside the machine's own count.
    """
    results = fakeResults()
    results["throughput"]["front2"]["rounds"] = [
        {"ratio_to_direct": 0.50, "cores_busy": 1.80},  # 2.70
        {"ratio_to_direct": 0.60, "cores_busy": 1.90},  # 2.375
        {"ratio_to_direct": 0.55, "cores_busy": 1.85},  # 2.52
    ]
    assert coresForRatio(results["throughput"]["front2"], 0.75) == pytest.approx(0.75 / 0.55 * 1.85)
    assert coresForRatio(results["throughput"]["front1"], 0.65) is None  # no rounds
    assert coresForRatio({"rounds": [{"ratio_to_direct": 0.0, "cores_busy": 1.0}]}, 0.65) is None
    target = next(t for t in evaluateTargets(results) if t["name"].endswith("(2 workers)")
                  and "throughput" in t["name"])
    assert not target["met"]
    assert target["cores_needed"] == pytest.approx(2.5227, abs=1e-3)
    assert target["shown"] == (
        "0.62x (0.75x would keep at least 2.52 cores busy at this run's CPU per request;"
        " the machine has 2)"
    )
    rows = dict(tableRows(results))
    assert "cores busy (wrk + proxy + server)" in rows
    assert "wrk CPU µs/request" in rows


def test_writeResults(tmp_path):
    results = fakeResults()
    results["targets"] = evaluateTargets(results)
    path = writeResults(results, tmp_path / "out", "20260101T000000Z")
    assert path.name == "bench-20260101T000000Z.json"
    latest = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert latest == json.loads(path.read_text())
    assert latest["throughput"]["front1"]["proxy_cpu_us_per_request"] == 150.0
    assert {"name", "value", "limit", "met", "shown"} <= set(latest["targets"][0])


def test_chartModuleNeedsOnlyMatplotlib():
    """
    The chart runs under the load environment's interpreter: the modules
    it imports from the bench must not pull in Twisted or the services.
    """
    code = (
        "import sys, webstack.bench.report\n"
        "assert not [m for m in sys.modules if m.startswith(('twisted', 'webstack.runtime'))]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
