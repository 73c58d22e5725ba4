"""
The cyclic collector's settings (L{webstack.runtime.collector}): the
thresholds set, and a real service process saying which thresholds it runs
with.  (Start-up's objects frozen once per process, when a site starts:
tests.test_channel.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from webstack.localstack import LocalStack
from webstack.runtime import collector


class Collector:
    """
    The part of the C{gc} module the runtime uses, recording what it is told.
    """

    def __init__(self):
        self.thresholds = (700, 10, 10)
        self.calls = []

    def set_threshold(self, *thresholds):
        self.thresholds = thresholds

    def get_threshold(self):
        return self.thresholds

    def collect(self):
        self.calls.append("collect")

    def freeze(self):
        self.calls.append("freeze")

    def get_freeze_count(self):
        return 1234


def test_theYoungThresholdIsSetWithTheOlderOnes():
    gc = Collector()
    assert collector.tuneCollector(10000, gc) == (10000, 50, 100)
    assert gc.thresholds == (10000, 50, 100)


def test_zeroLeavesCPythonsOwnThresholds():
    gc = Collector()
    assert collector.tuneCollector(0, gc) == (700, 10, 10)


def test_withoutAThresholdOnlyTheFreezeIsDone(monkeypatch):
    # What a WebSite built by a test (gcThreshold None) does when it starts.
    monkeypatch.setattr(collector, "_frozen", True)
    gc = Collector()
    collector.prepareForServing(None, gc)
    assert gc.thresholds == (700, 10, 10)
    collector.prepareForServing(5000, gc)
    assert gc.thresholds == (5000, 50, 100)


def interpretersOwnThresholds() -> list[int]:
    """
    A fresh interpreter's thresholds (CPython's own differ between
    versions), asked of one: this process's may have been changed.
    """
    out = subprocess.run(
        [sys.executable, "-c", "import gc; print(*gc.get_threshold())"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    return [int(n) for n in out.split()]


@pytest.mark.integration
@pytest.mark.parametrize(
    "env, expected",
    [({}, [10000, 50, 100]), ({"WEBSTACK_RUNTIME_GC_THRESHOLD": "0"}, None)],
)
def test_aServiceRunsWithTheThresholdsItIsGiven(env, expected):
    expected = expected or interpretersOwnThresholds()[:3]
    with LocalStack(ephemeral=True, backends=("async",), env=env) as stack:
        for name in ("front", "async"):
            # One line per process: the front's workers each say theirs.
            events = stack.services[name].events("gc_thresholds")
            assert events, f"{name} did not log its collector's thresholds"
            for event in events:
                assert [event["young"], event["middle"], event["old"]] == expected
                assert event["frozen"] > 1000
