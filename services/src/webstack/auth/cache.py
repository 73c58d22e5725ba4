# -*- test-case-name: tests.test_auth_units -*-
"""
Verified Basic credentials remembered for a short time, as Apache's
C{mod_authn_socache} does: bcrypt is slow on purpose (about 0.2 s a check at
cost 12), and a Basic client sends its password again with every request.

An entry's key is an HMAC of the user name and the password under a secret
made at random per process, never the password itself (nor a fast hash of
it that could be tested against guesses); its value is the avatar id the
check gave.  Only a check that passed is stored: a wrong password is checked
again every time.  Entries live C{ttl} seconds from the check (a hit does
not extend them), are at most C{maxEntries} (the least recently used goes
first), and are all dropped when the password file changes: L{validFor} is
told the file's generation on every lookup and store, and a check that
started before a change is not stored after it.  Time comes from the clock
it is given, so it is tested on a L{Clock}.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable


class VerifiedCredentials:
    def __init__(
        self,
        clock,
        ttl: float,
        maxEntries: int,
        onHit: Callable[[], object] = lambda: None,
        secret: bytes | None = None,
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._maxEntries = maxEntries
        self._onHit = onHit
        self._secret = secret if secret is not None else os.urandom(32)
        self._entries: OrderedDict[bytes, tuple[float, str]] = OrderedDict()
        self._generation: object = None

    @property
    def enabled(self) -> bool:
        return self._ttl > 0 and self._maxEntries > 0

    def key(self, user: bytes, password: bytes) -> bytes:
        # The length first, so that no other (user, password) pair gives
        # the same message.
        message = b"%d:" % (len(user),) + user + password
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def validFor(self, generation: object) -> None:
        """
        Drop every entry if the password file is not the one they were
        checked against.
        """
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation

    def get(self, user: bytes, password: bytes, generation: object) -> str | None:
        """
        The avatar id of a recent check of exactly these credentials that
        passed, or C{None}.
        """
        if not self.enabled:
            return None
        self.validFor(generation)
        key = self.key(user, password)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, avatarId = entry
        if expires <= self._clock.seconds():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self._onHit()
        return avatarId

    def put(self, user: bytes, password: bytes, avatarId: str, generation: object) -> None:
        """
        Remember that these credentials passed a check made against the
        password file of C{generation}.
        """
        if not self.enabled or generation != self._generation:
            return
        key = self.key(user, password)
        self._entries.pop(key, None)
        while len(self._entries) >= self._maxEntries:
            self._entries.popitem(last=False)
        self._entries[key] = (self._clock.seconds() + self._ttl, avatarId)

    def __len__(self) -> int:
        return len(self._entries)
