# -*- test-case-name: tests.test_auth_units -*-
"""
Slowing down password guessing: after C{maxFailures} failed logins within
C{window} seconds, a user name or a client address is refused for
C{lockout} seconds (C{429} with C{Retry-After}).  Time comes from the clock
it is given, so it is tested on a L{Clock}.

What a failure is, and whose, is decided by the caller from the login's own
outcome (L{webstack.auth.login}), never from a second reading of the
request.  The keys are bounded in number: past C{maxKeys}, the key that
failed longest ago is forgotten first, so user names a client makes up
cannot grow the tables without end.
"""

from __future__ import annotations

from collections import deque

MAX_KEYS = 100_000


class FailureThrottle:
    def __init__(
        self, clock, maxFailures: int, window: float, lockout: float, maxKeys: int = MAX_KEYS
    ) -> None:
        self._clock = clock
        self._max = maxFailures
        self._window = window
        self._lockout = lockout
        self._maxKeys = maxKeys
        # Both in the order of their last change, oldest first.
        self._failures: dict[str, deque[float]] = {}
        self._lockedUntil: dict[str, float] = {}

    def retryAfter(self, *keys: str) -> float:
        """
        Seconds until all of C{keys} may try again (0: now).
        """
        now = self._clock.seconds()
        wait = 0.0
        for key in keys:
            until = self._lockedUntil.get(key)
            if until is not None:
                if until <= now:
                    del self._lockedUntil[key]
                else:
                    wait = max(wait, until - now)
        return wait

    def failed(self, key: str) -> bool:
        """
        Count a failure of C{key}; return whether it is now locked out.
        """
        now = self._clock.seconds()
        recent = self._failures.pop(key, None)
        if recent is None:
            recent = deque()
            _makeRoom(self._failures, self._maxKeys)
        self._failures[key] = recent
        recent.append(now)
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self._max:
            del self._failures[key]
            self._lockedUntil.pop(key, None)
            _makeRoom(self._lockedUntil, self._maxKeys)
            self._lockedUntil[key] = now + self._lockout
            return True
        return False

    def succeeded(self, key: str) -> None:
        """
        Forget the failures of C{key} (a lockout in force stays).
        """
        self._failures.pop(key, None)

    def __len__(self) -> int:
        """
        How many keys are remembered (failing or locked out).
        """
        return len(self._failures) + len(self._lockedUntil)


def _makeRoom(table: dict, limit: int) -> None:
    """
    Drop the oldest entries of C{table} until one more fits under C{limit}.
    """
    while len(table) >= limit:
        del table[next(iter(table))]
