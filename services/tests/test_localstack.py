"""
`make run`'s supervisor as a process: it starts every service, and a
signal (two, in quick succession, as an impatient Ctrl-C gives) stops them
all cleanly.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .support import waitFor

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_twoQuickSignalsStopEveryServiceAndExitZero():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services" / "src"))
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "webstack.localstack", "--ephemeral"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in supervisor.stdout:  # bounded by the supervisor's start timeout
            lines.append(line)
            if "webstack is up" in line:
                break
        assert any("webstack is up" in line for line in lines), "".join(lines[-20:])
        children = [
            int(pid)
            for pid in Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
        ]
        assert len(children) == 7
        supervisor.send_signal(signal.SIGTERM)
        time.sleep(0.01)
        supervisor.send_signal(signal.SIGTERM)
        output, _ = supervisor.communicate(timeout=40)
        assert supervisor.returncode == 0, output[-2000:]
        assert "webstack stopped: {" in output
        waitFor(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), what="children gone")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
