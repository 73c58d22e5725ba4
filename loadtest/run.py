"""
Run the load test: `make load` and `make load-ui` call this.

    python loadtest/run.py [--ui] [--host URL] [--users N] [--spawn-rate R]
        [--duration T] [--scenario mixed|delay|cancel|stream|demos|step]
        [--workers N] [-- extra locust arguments]

Settings come from config/locust.conf (locust's own format); what is given
here overrides them.  Reports go to reports/<timestamp>/: locust's HTML
report and CSVs, summary.json, chart.png.  Headless runs exit non-zero when
a threshold is broken (errors, or an abort no backend cancelled).  With
--workers N, locust runs a master and N worker processes (distributed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SCENARIOS = {
    "mixed": ["DelayedUser", "CancellingUser", "StreamingUser", "MixedUser"],
    "delay": ["DelayedUser"],
    "cancel": ["CancellingUser"],
    "stream": ["StreamingUser"],
    "demos": ["MixedUser"],
    "step": ["DelayedUser"],
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # In a container (`make load-ui-compose`) the environment says both: the
    # UI listens on the container's every address, published on the host's
    # loopback only.
    parser.add_argument(
        "--ui",
        action="store_true",
        default=os.environ.get("WEBSTACK_LOAD_UI") == "1",
        help="locust's web UI (WEBSTACK_LOAD_UI=1 says the same)",
    )
    parser.add_argument(
        "--web-host",
        default=os.environ.get("WEBSTACK_LOAD_WEB_HOST", "127.0.0.1"),
        help="the address the UI listens on (default 127.0.0.1)",
    )
    parser.add_argument("--host")
    parser.add_argument("--users")
    parser.add_argument("--spawn-rate")
    parser.add_argument("--duration")
    parser.add_argument("--scenario", default="mixed", choices=sorted(SCENARIOS))
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--config", default=str(ROOT / "config" / "locust.conf"))
    parser.add_argument("--report-root", default=str(ROOT / "reports"))
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args(argv)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    directory = Path(args.report_root) / stamp
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "locust",
        "-f", str(HERE / "locustfile.py"),
        "--config", args.config,
        "--html", str(directory / "report.html"),
        "--csv", str(directory / "locust"),
        "--csv-full-history",
        "--report-dir", str(directory),
    ]
    for flag, value in (("--host", args.host), ("--users", args.users),
                        ("--spawn-rate", args.spawn_rate), ("--stop-after", args.duration)):
        if value:
            command += [flag, value]
    if args.ui:
        command += ["--web-host", args.web_host]
    else:
        command += ["--headless"]
    if (args.ui or args.scenario == "step") and not args.duration:
        # The UI's Stop button, or the step shape, ends the run.
        command += ["--stop-after", "0"]
    if args.workers:
        command += ["--processes", str(args.workers)]
    command += args.extra + SCENARIOS[args.scenario]
    env = dict(os.environ, WEBSTACK_SCENARIO=args.scenario)
    # Compose passes LOCUST_USERS="" and the like for "not given" (so that
    # config/locust.conf decides); locust reads an empty one as a bad value.
    for name in [n for n, v in env.items() if n.startswith("LOCUST_") and not v]:
        del env[name]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    print(f"report: {directory}\n$ {' '.join(command)}", flush=True)
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    # A terminal's Ctrl-C reaches locust by itself; a SIGTERM sent to this
    # launcher is passed on, so locust is never left running alone.
    signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    status = process.wait()
    summary = directory / "summary.json"
    if summary.exists():
        sys.path.insert(0, str(HERE))
        from webstack_load.report import table

        print(table(json.loads(summary.read_text())), flush=True)
    print(f"report: {directory} (report.html, locust_*.csv, summary.json, chart.png)", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
