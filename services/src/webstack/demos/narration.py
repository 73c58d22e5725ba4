# -*- test-case-name: tests.test_demos -*-
"""
What a demo says while it runs: each step with the seconds since the demo
began, what to watch while it happens, the figures it measured, and one
verdict line at the end.  Plain lines on standard output, so a demo reads
the same in a terminal, in CI's log and in the README.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class Narrator:
    name: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    clock: Any = time.monotonic
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self._start

    def _say(self, mark: str, text: str) -> None:
        self.out.write(f"[{self.elapsed():6.1f}s] {mark} {text}\n")
        self.out.flush()

    def step(self, text: str) -> None:
        """
        Something the demo does now.
        """
        self._say("==>", text)

    def watch(self, text: str) -> None:
        """
        What to look at while it happens (a page, a metric, a command).
        """
        self._say("   watch:", text)

    def note(self, text: str) -> None:
        self._say("   ", text)

    def figure(self, name: str, value: Any) -> None:
        """
        A measured figure: said now and kept for the summary.
        """
        self.figures[name] = value
        self._say("   =", f"{name}: {value}")

    def verdict(self, passed: bool, line: str) -> bool:
        self.out.write(f"\n{self.name}: {'PASS' if passed else 'FAIL'}: {line}\n")
        self.out.flush()
        return passed
