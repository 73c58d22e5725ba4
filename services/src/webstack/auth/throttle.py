# -*- test-case-name: webstack.tests.test_auth_units -*-
"""
Slowing down password guessing: after C{maxFailures} failed logins within
C{window} seconds, a user name or a client address is refused for
C{lockout} seconds (C{429} with C{Retry-After}).  Time comes from the clock
it is given, so it is tested on a L{Clock}.
"""

from __future__ import annotations

from collections import deque

_MAX_KEYS = 100_000


class FailureThrottle:
    def __init__(self, clock, maxFailures: int, window: float, lockout: float) -> None:
        self._clock = clock
        self._max = maxFailures
        self._window = window
        self._lockout = lockout
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
        if len(self._failures) >= _MAX_KEYS and key not in self._failures:
            self._forgetStale(now)
        recent = self._failures.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self._max:
            self._lockedUntil[key] = now + self._lockout
            del self._failures[key]
            return True
        return False

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _forgetStale(self, now: float) -> None:
        for key in [k for k, q in self._failures.items() if not q or q[-1] <= now - self._window]:
            del self._failures[key]
