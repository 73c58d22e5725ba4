# -*- test-case-name: tests.test_auth_units -*-
"""
Password files that hold no password: Apache's C{htpasswd} with bcrypt hashes
(for Basic) and C{htdigest} with HA1 hashes (for Digest), and the two
L{ICredentialsChecker}s that read them.

The seed's L{FilePasswordDB} keeps passwords in plain text, and with a hash
function it can check only Basic; Digest needs the server to know
C{MD5(user:realm:password)}, which is exactly what an C{htdigest} file
stores.  bcrypt is slow on purpose, so it runs on a thread, never on the
reactor; an unknown user costs a bcrypt check too, so timing tells nothing.
Both files are read again when they change, so C{make user} takes effect at
once.  A Basic check that passed may be remembered for a while
(L{webstack.auth.cache}), and the checks run on threads of their own, a
bounded number at a time (L{webstack.auth.checkpool}).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import bcrypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernameDigestHash, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .cache import VerifiedCredentials

log = Logger(namespace="webstack.auth")

_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(12))


class WatchedFile:
    """
    The parsed lines of a C{name:...} file, read again when it changes.

    @ivar generation: a number that changes whenever the entries may have
        (what a cache of checks made against them compares).
    """

    def __init__(self, path: str, parse: Callable[[list[str]], tuple[str, ...]]) -> None:
        self.path = path
        self._parse = parse
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, tuple[str, ...]] = {}
        self._unreadable: tuple[int, int] | None = None
        self.generation = 0

    def entries(self) -> dict[str, tuple[str, ...]]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._replace(None, {})
            return self._entries
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            try:
                entries = self._read()
            except (OSError, UnicodeDecodeError) as e:
                # Unreadable (a mode 0600 file of another user, say): no one
                # logs in, said once rather than a 500 each time, and read
                # again next time (a chmod does not change the stamp).
                if stamp != self._unreadable:
                    self._unreadable = stamp
                    log.error(
                        "auth: cannot read {path}: {error}; every login checked against it fails",
                        event="password_file_unreadable",
                        path=self.path,
                        error=str(e),
                    )
                self._replace(None, {})
                return self._entries
            self._unreadable = None
            self._replace(stamp, entries)
        return self._entries

    def _read(self) -> dict[str, tuple[str, ...]]:
        entries = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, *rest = line.split(":")
                entries[name] = self._parse(rest)
        return entries

    def _replace(self, stamp, entries) -> None:
        if stamp != self._stamp or entries != self._entries:
            self.generation += 1
        self._stamp, self._entries = stamp, entries


def htdigestHash(user: str, realm: str, password: str) -> str:
    """
    HA1 of RFC 2617: what an htdigest file stores.
    """
    return hashlib.md5(f"{user}:{realm}:{password}".encode("utf-8")).hexdigest()


def bcryptHash(password: str, rounds: int = 12) -> str:
    """
    An htpasswd bcrypt hash, with Apache's C{$2y$} prefix.
    """
    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode()
    return "$2y$" + hashed[4:]


@implementer(ICredentialsChecker)
class HtpasswdChecker:
    """
    Basic credentials against an htpasswd file of bcrypt hashes.

    @param inThread: runs a function on a thread and returns a Deferred of
        its result (L{twisted.internet.threads.deferToThreadPool}, bound, or
        L{webstack.auth.checkpool.BoundedCalls}).
    @param cache: where checks that passed are remembered, if anywhere.
        With one, the same credentials sent again while their check runs
        wait for that check instead of queueing one more: a burst of a
        client's first requests (or of one guess) costs one bcrypt.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        path: str,
        inThread: Callable[..., Deferred],
        cache: VerifiedCredentials | None = None,
    ) -> None:
        self._file = WatchedFile(path, lambda rest: (":".join(rest),))
        self._inThread = inThread
        self._cache = cache
        self._running: dict[tuple[bytes, int], list[Deferred]] = {}

    def requestAvatarId(self, credentials):
        username = credentials.username
        if isinstance(username, str):
            username = username.encode("utf-8")
        name = username.decode("utf-8", "replace")
        password = credentials.password
        if isinstance(password, str):
            password = password.encode("utf-8")
        entry = self._file.entries().get(name)
        generation = self._file.generation
        cache = self._cache

        def checked(ok):
            if ok and entry is not None:
                if cache is not None:
                    cache.put(username, password, name, generation)
                return name
            raise UnauthorizedLogin("bad user name or password")

        if cache is None:
            return self._check(password, entry).addCallback(checked)
        known = cache.get(username, password, generation)
        if known is not None:
            return succeed(known)
        running = (cache.key(username, password), generation)
        waiting = self._running.get(running)
        if waiting is not None:
            d = Deferred()
            waiting.append(d)
            return d.addCallback(checked)
        self._running[running] = []
        d = self._check(password, entry)
        d.addBoth(self._settled, running)
        return d.addCallback(checked)

    def _check(self, password: bytes, entry) -> Deferred:
        hashed = entry[0].encode("ascii", "replace") if entry else _DUMMY_HASH
        return self._inThread(_checkBcrypt, password, hashed)

    def _settled(self, result, running):
        """
        Give a check's result to the requests that waited for it too.
        """
        for waiting in self._running.pop(running):
            if isinstance(result, Failure):
                waiting.errback(result)
            else:
                waiting.callback(result)
        return result


def _checkBcrypt(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


@implementer(ICredentialsChecker)
class HtdigestChecker:
    """
    Digest credentials against an htdigest file of HA1 hashes for one realm.
    """

    credentialInterfaces = (IUsernameDigestHash,)

    def __init__(self, path: str, realm: str) -> None:
        self._file = WatchedFile(path, tuple)
        self._realm = realm

    def requestAvatarId(self, credentials):
        username = credentials.username
        name = username.decode("utf-8", "replace") if isinstance(username, bytes) else username
        entry = self._file.entries().get(name)
        if entry and len(entry) == 2 and entry[0] == self._realm:
            if credentials.checkHash(entry[1].encode("ascii")):
                return succeed(name)
        return fail(UnauthorizedLogin("bad user name or password"))
