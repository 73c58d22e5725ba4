"""
What a server costs, counted over its whole process tree: a front with
workers is a parent and its children, nginx is a master and a worker, so
the CPU and memory of "the proxy" are the sums over a root process and all
its descendants, read from C{/proc}.

CPU time includes each process's C{cutime}/C{cstime} (the time of children
it has waited for): a worker that exits between two readings moves its time
into its parent's, so a difference of two readings stays right.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class ProcStat:
    """
    The fields of C{/proc/PID/stat} the bench uses.

    @ivar ticks: utime + stime + cutime + cstime, in clock ticks.
    @ivar started: start time after boot, in clock ticks: with the pid, it
        names one process even if the pid is reused later.
    """

    pid: int
    state: str
    ppid: int
    ticks: int
    started: int
    rssKiB: int


def readStat(pid: int) -> ProcStat | None:
    """
    One process's stat line, or C{None} if it has gone.
    """
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or
    # parentheses itself: the fields after the last ")" start at field 3.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ProcStat(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        ticks=utime + stime + cutime + cstime,
        started=int(fields[19]),
        rssKiB=int(fields[21]) * PAGE_KIB,
    )


def _children(pid: int) -> list[int] | None:
    """
    The children of C{pid} from C{/proc/PID/task/*/children}, or C{None} if
    this kernel does not offer that file.
    """
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except FileNotFoundError:
        return []
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            if not (task / "stat").exists():
                continue  # the thread ended meanwhile
            return None
    return found


def _childrenByScan() -> dict[int, list[int]]:
    """
    Every process's children, from each one's parent in C{/proc/*/stat}.
    """
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = readStat(int(entry.name))
            if stat is not None:
                tree.setdefault(stat.ppid, []).append(stat.pid)
    return tree


def processTree(root: int) -> list[int]:
    """
    C{root} and all its descendants that are alive now (root first).
    """
    if not (PROC / str(root)).exists():
        return []
    tree: dict[int, list[int]] | None = None
    result, queue = [], [root]
    while queue and len(result) < 10000:
        pid = queue.pop(0)
        result.append(pid)
        children = _children(pid) if tree is None else None
        if children is None:
            if tree is None:
                tree = _childrenByScan()
            children = tree.get(pid, [])
        queue.extend(children)
    return result


def treeStats(root: int) -> list[ProcStat]:
    return [s for s in map(readStat, processTree(root)) if s is not None]


def cpuSeconds(root: int) -> float:
    """
    CPU seconds (user + system, with reaped children) of C{root}'s tree.
    """
    return sum(s.ticks for s in treeStats(root)) / CLOCK_TICKS


def rssKiB(root: int) -> int:
    """
    Resident memory of C{root}'s tree, summed over its processes (pages
    the processes share count once per process: compare two sums, not one
    sum with another server's).
    """
    return sum(s.rssKiB for s in treeStats(root))


class CPUMeter:
    """
    CPU seconds of several process trees between C{start} and C{stop}, and
    of each process in them.
    """

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self._before: dict[str, dict[tuple[int, int], int]] = {}
        self.used: dict[str, float] = {}
        self.byProcess: dict[str, list[float]] = {}

    @staticmethod
    def _ticks(root: int) -> dict[tuple[int, int], int]:
        # By pid and start time: a pid reused within the run is another
        # process.
        return {(s.pid, s.started): s.ticks for s in treeStats(root)}

    def start(self) -> None:
        self._before = {name: self._ticks(pid) for name, pid in self.roots.items()}

    def stop(self) -> dict[str, float]:
        """
        The CPU seconds each tree used (a process that ended since and was
        reaped counts in its parent's).
        """
        for name, pid in self.roots.items():
            before, after = self._before[name], self._ticks(pid)
            self.used[name] = (sum(after.values()) - sum(before.values())) / CLOCK_TICKS
            self.byProcess[name] = sorted(
                ((ticks - before.get(key, 0)) / CLOCK_TICKS for key, ticks in after.items()),
                reverse=True,
            )
        return self.used

    def busiestShare(self, name: str) -> float | None:
        """
        The share of tree C{name}'s CPU that its busiest process used:
        about 1/N when N workers split the work, 1 when one did it all
        (C{None} for a tree that used none).
        """
        used = self.byProcess.get(name) or []
        total = sum(used)
        return used[0] / total if total > 0 else None


def stopTree(root: int, grace: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """
    Stop a process we started, and whatever it started: signal C{root},
    wait up to C{grace} seconds for the tree to go, then SIGKILL whatever
    of that same tree (same pid and start time) is left.  The caller reaps
    C{root} itself (it is the caller's child).
    """
    members = treeStats(root)
    if not members:
        return
    try:
        os.kill(root, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not [m for m in members if _same(m)]:
            return
        time.sleep(0.05)
    for member in members:
        if _same(member):
            try:
                os.kill(member.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [m for m in members if _same(m)]:
        time.sleep(0.02)


def stopChild(process, grace: float = 10.0) -> None:
    """
    L{stopTree} for a child we started with L{subprocess.Popen}, then reap it
    (killing it if it is somehow still there).
    """
    stopTree(process.pid, grace=grace)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _same(member: ProcStat) -> bool:
    """
    Whether C{member} is still running (not a zombie, not a new process
    that reuses its pid).
    """
    now = readStat(member.pid)
    return now is not None and now.started == member.started and now.state != "Z"
