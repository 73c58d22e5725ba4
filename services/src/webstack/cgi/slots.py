# -*- test-case-name: tests.test_cgi -*-
"""
How many CGI scripts may run at once.

Every CGI request is a process, and a shell script often starts more of
its own: left unbounded, 200 clients asking for a slow script at once make
200 scripts at once, and what stops them is the container's pids or memory
limit, which then fails every script and the service's own threads with
them.  L{ScriptSlots} is the count the service keeps itself: a request that
finds every slot taken is refused at once (503 with C{Retry-After}), never
queued, since a queue would keep the client's connection, its buffered body
and a place in line for a script that may run for C{cgi.timeout} seconds.

A slot is taken just before the script is spawned and given back when its
process has ended (reaped, and its output pipes closed, so a child the
script left holding them still counts).
"""

from __future__ import annotations

from collections.abc import Callable


def _ignore(amount: int) -> None:
    pass


class ScriptSlots:
    """
    At most C{capacity} scripts at once.

    @ivar running: the slots taken now.
    """

    def __init__(self, capacity: int, changed: Callable[[int], None] = _ignore) -> None:
        """
        @param capacity: how many scripts may run at once (at least 1).
        @param changed: called with C{+1} or C{-1} as a slot is taken or given
            back (a gauge's adder).
        """
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity!r}")
        self.capacity = capacity
        self.running = 0
        self._changed = changed

    def acquire(self) -> bool:
        """
        Take a slot if one is free; return whether one was.
        """
        if self.running >= self.capacity:
            return False
        self.running += 1
        self._changed(1)
        return True

    def release(self) -> None:
        """
        Give back a slot taken by L{acquire}.
        """
        if self.running <= 0:
            raise RuntimeError("a script slot given back that was never taken")
        self.running -= 1
        self._changed(-1)
