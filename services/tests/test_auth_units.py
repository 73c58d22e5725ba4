"""
The auth service's parts in memory: password files, the throttle on a
L{Clock}, whose address is believed, the login watched where it happens
(failures of clients that left, whose success resets what, 429 and 503), the
cache of verified Basic logins on a L{Clock}, the bounded check pool, and
`make user`'s file modes.
"""

import base64
import os
import stat

import pytest
from prometheus_client import CollectorRegistry
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.guard import BasicCredentialFactory
from twisted.web.resource import IResource, Resource
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from webstack.auth import users
from webstack.auth.app import ThrottledGuard, authMetrics
from webstack.auth.cache import VerifiedCredentials
from webstack.auth.checkpool import BoundedCalls, ChecksBusy
from webstack.runtime.networks import TrustedProxies
from webstack.auth.login import Judge, schemeLabel, userKey
from webstack.auth.passwords import HtpasswdChecker, WatchedFile, bcryptHash, htdigestHash
from webstack.auth.throttle import FailureThrottle

from .support import dummyRequest


def synchronously(f, *args):
    return maybeDeferred(f, *args)


def test_htpasswdHoldsNoPasswordAndChecksIt(tmp_path):
    path = tmp_path / "htpasswd"
    line = "carol:" + bcryptHash("correct horse", rounds=4)
    path.write_text(line + "\n")
    assert "correct horse" not in path.read_text() and line.split(":")[1].startswith("$2y$")
    checker = HtpasswdChecker(str(path), synchronously)
    result = []
    checker.requestAvatarId(UsernamePassword(b"carol", b"correct horse")).addCallback(result.append)
    assert result == ["carol"]
    for user, password in ((b"carol", b"wrong"), (b"nobody", b"correct horse")):
        failures = []
        checker.requestAvatarId(UsernamePassword(user, password)).addErrback(failures.append)
        assert failures and failures[0].check(UnauthorizedLogin)


def test_htpasswdIsReadAgainWhenItChanges(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text("")
    checker = HtpasswdChecker(str(path), synchronously)
    failures = []
    checker.requestAvatarId(UsernamePassword(b"dave", b"password1")).addErrback(failures.append)
    assert failures
    path.write_text("dave:" + bcryptHash("password1", rounds=4) + "\n# grown\n")
    result = []
    checker.requestAvatarId(UsernamePassword(b"dave", b"password1")).addCallback(result.append)
    assert result == ["dave"]


def test_htdigestHashIsRFC2617HA1():
    assert htdigestHash("Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9"
    )


def test_throttleLocksOutAfterTooManyFailuresWithinTheWindow():
    clock = Clock()
    throttle = FailureThrottle(clock, maxFailures=3, window=60, lockout=30)
    assert not throttle.failed("a")
    clock.advance(59)
    assert not throttle.failed("a")
    clock.advance(2)  # the first failure is out of the window now
    assert not throttle.failed("a")
    assert throttle.retryAfter("a") == 0
    assert throttle.failed("a")
    assert throttle.retryAfter("a", "b") == 30
    clock.advance(29.5)
    assert throttle.retryAfter("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert throttle.retryAfter("a") == 0


def test_aSuccessForgetsTheFailures():
    clock = Clock()
    throttle = FailureThrottle(clock, maxFailures=2, window=60, lockout=30)
    throttle.failed("a")
    throttle.succeeded("a")
    assert not throttle.failed("a")


def request(**headers):
    return dummyRequest(DummyRequest, "127.0.0.1", **headers)


def test_onlyATrustedProxyNamesTheClient():
    proxies = TrustedProxies(["127.0.0.0/8"])
    assert proxies.clientHost(request(x_forwarded_for=b"6.6.6.6, 198.51.100.7")) == "198.51.100.7"
    assert TrustedProxies(["10.0.0.0/8"]).clientHost(request(x_forwarded_for=b"198.51.100.7")) == "127.0.0.1"


def test_theThrottleForgetsTheKeyThatFailedLongestAgoWhenFull():
    throttle = FailureThrottle(Clock(), maxFailures=3, window=60, lockout=30, maxKeys=3)
    for n in range(10):
        throttle.failed(f"made-up-{n}")
    assert len(throttle) == 3  # made-up-7, -8 and -9 are left
    assert not throttle.failed("made-up-7")  # its second: now the newest
    throttle.failed("another")  # made-up-8 goes
    assert throttle.failed("made-up-7")  # its third: both kept
    assert not throttle.failed("made-up-8") and not throttle.failed("made-up-8")
    assert len(throttle) <= 3 + 1


def test_schemeLabelsAreAFixedSet():
    assert schemeLabel(b"Basic abc") == "basic"
    assert schemeLabel(b"DIGEST username=x") == "digest"
    for made_up in (b"Bearer x", b"X-Scheme-123 y", b"basic\tx", b"", b"\xff\xfe"):
        assert schemeLabel(made_up) == "other"
    assert userKey(b"bob") == "user:bob" and len(userKey("x" * 10_000)) == len("user:") + 128


# The login, watched where it happens: Twisted's guard over a portal whose
# checker answers when the test says.


@implementer(ICredentialsChecker)
class HeldChecker:
    """
    A checker whose every check waits for the test to decide it.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self):
        self.held = []

    def requestAvatarId(self, credentials):
        d = Deferred()
        self.held.append((credentials, d))
        return d

    def passAs(self, avatarId, index=0):
        self.held.pop(index)[1].callback(avatarId)

    def refuse(self, index=0):
        self.held.pop(index)[1].errback(UnauthorizedLogin("no"))


class Home(Resource):
    isLeaf = True

    def __init__(self, body):
        super().__init__()
        self.body = body

    def render(self, request):
        return self.body


@implementer(IRealm)
class Homes:
    def requestAvatar(self, avatarId, mind, *interfaces):
        return IResource, Home(b"home of " + avatarId.encode()), lambda: None


class Guarded:
    def __init__(self, checker, maxFailures=3):
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.metrics = authMetrics(self.registry)
        self.throttle = FailureThrottle(self.clock, maxFailures, window=60, lockout=30)
        self.logged = []
        log = type("Log", (), {"warn": lambda _, *a, **k: self.logged.append(k)})()
        self.guard = ThrottledGuard(
            Portal(Homes(), [checker]),
            [BasicCredentialFactory(b"test")],
            Judge(self.throttle, self.metrics, log),
            TrustedProxies(["127.0.0.0/8"]),
        )

    def get(self, authorization=None, client="198.51.100.1"):
        headers = {"x_forwarded_for": client.encode()}
        if authorization is not None:
            headers["authorization"] = authorization
        req = request(**headers)
        req.prepath, req.postpath = [b"auth", b""], []  # as the site walked to /auth/
        req.render(self.guard.getChildWithDefault(b"", req))
        return req

    def metric(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0


def basicHeader(user, password, strip=False):
    encoded = base64.b64encode(f"{user}:{password}".encode())
    return b"Basic " + (encoded.rstrip(b"=") if strip else encoded)


def leave(req):
    req.processingFailed(Failure(ConnectionDone("the client closed its socket")))


def test_aCheckThatFailsAfterItsClientLeftStillCountsAsAFailure():
    """
    The attack: every few wrong passwords, one the client abandons during
    the check.  It used to end with the default status (200) and count as
    a success, resetting the throttle.  Now the check's own outcome counts,
    and nothing is written to the client that left.
    """
    checker = HeldChecker()
    world = Guarded(checker, maxFailures=3)
    for n in range(2):
        req = world.get(basicHeader("bob", f"guess-{n}"), client=f"192.0.2.{n}")
        checker.refuse()
        assert req.responseCode == 401
    abandoned = world.get(basicHeader("bob", "guess-2"), client="192.0.2.9")
    leave(abandoned)
    checker.refuse()
    assert abandoned.written == [] and not abandoned.finished
    assert world.metric("auth_attempts_total", scheme="basic", outcome="failed") == 3
    assert world.metric("auth_attempts_total", scheme="basic", outcome="ok") == 0
    locked = world.get(basicHeader("bob", "the right one"), client="192.0.2.77")
    assert locked.responseCode == 429 and checker.held == []
    assert int(locked.responseHeaders.getRawHeaders(b"retry-after")[0]) == 30
    assert world.metric("auth_throttled_total") == 1


def test_aSuccessAfterItsClientLeftWritesNothingAndStillCounts():
    checker = HeldChecker()
    world = Guarded(checker)
    req = world.get(basicHeader("bob", "right"))
    leave(req)
    checker.passAs("bob")
    assert req.written == [] and not req.finished
    assert world.metric("auth_attempts_total", scheme="basic", outcome="ok") == 1


def test_theThrottleReadsTheUserNameTheGuardDecoded():
    """
    The guard decodes Basic leniently (padding may be left out); a second,
    strict decoder found no user name there, so the user's key never
    counted.  Now the key is the name the checker was given.
    """
    checker = HeldChecker()
    world = Guarded(checker, maxFailures=3)
    for n in range(3):
        world.get(basicHeader("bob", f"guess-{n}x", strip=True), client=f"192.0.2.{n}")
        assert checker.held[0][0].username == b"bob"
        checker.refuse()
    assert world.throttle.retryAfter("user:bob") == 30


def test_onlyASuccessOfThatSameUserResetsItsKey():
    checker = HeldChecker()
    world = Guarded(checker, maxFailures=3)
    for n in range(2):
        world.get(basicHeader("bob", "guess"), client=f"192.0.2.{n}")
        checker.refuse()
    # A success of someone else, even one the checker names differently
    # from the name sent, resets only the avatar's own key.
    ok = world.get(basicHeader("bob", "alice's password"), client="192.0.2.50")
    checker.passAs("alice")
    assert ok.written == [b"home of alice"]
    world.get(basicHeader("bob", "guess"), client="192.0.2.3")
    checker.refuse()
    assert world.throttle.retryAfter("user:bob") == 30
    assert world.throttle.retryAfter("user:alice") == 0


def test_aSuccessOfTheUserResetsItsKey():
    checker = HeldChecker()
    world = Guarded(checker, maxFailures=3)
    for attempt in ("guess", "guess", "right", "guess", "guess"):
        world.get(basicHeader("carol", attempt), client="192.0.2.5")
        if attempt == "right":
            checker.passAs("carol")
        else:
            checker.refuse()
    assert world.throttle.retryAfter("user:carol", "address:192.0.2.5") == 0


def test_aBusyCheckPoolIs503WithRetryAfterAndNoFailure():
    @implementer(ICredentialsChecker)
    class Busy:
        credentialInterfaces = (IUsernamePassword,)

        def requestAvatarId(self, credentials):
            return fail(ChecksBusy(1))

    world = Guarded(Busy(), maxFailures=1)
    for _ in range(3):
        req = world.get(basicHeader("bob", "anything"))
        assert req.responseCode == 503
        assert req.responseHeaders.getRawHeaders(b"retry-after") == [b"1"]
    assert world.metric("auth_checks_busy_total") == 3
    assert world.metric("auth_attempts_total", scheme="basic", outcome="failed") == 0
    assert world.throttle.retryAfter("user:bob", "address:198.51.100.1") == 0


def test_aHeaderTheGuardCannotDecodeIsAFailureOfTheAddressOnly():
    checker = HeldChecker()
    world = Guarded(checker, maxFailures=2)
    for header in (b"Basic !!!", b"Bearer some-token", b"Scheme-42 x"):
        req = world.get(header, client="192.0.2.8")
        assert req.responseCode in (401, 429)
    assert checker.held == []
    assert world.metric("auth_attempts_total", scheme="basic", outcome="failed") == 1
    assert world.metric("auth_attempts_total", scheme="other", outcome="failed") == 1
    assert world.metric("auth_throttled_total") == 1  # the third: the address is locked
    assert world.throttle.retryAfter("address:192.0.2.8") == 30
    labels = {s.labels.get("scheme") for m in world.registry.collect() for s in m.samples}
    assert labels - {None} == {"basic", "digest", "other"}


def test_noCredentialsIsNoAttempt():
    checker = HeldChecker()
    world = Guarded(checker, maxFailures=1)
    for _ in range(3):
        assert world.get().responseCode == 401
    assert world.metric("auth_attempts_total", scheme="other", outcome="failed") == 0
    assert world.throttle.retryAfter("address:198.51.100.1") == 0


# The cache of verified Basic logins.


def test_theCacheRemembersAPassedCheckForItsTTLOnly():
    clock = Clock()
    hits = []
    cache = VerifiedCredentials(clock, ttl=60, maxEntries=10, onHit=lambda: hits.append(1))
    assert cache.get(b"bob", b"pw", 1) is None
    cache.put(b"bob", b"pw", "bob", 1)
    assert cache.get(b"bob", b"pw", 1) == "bob" and hits == [1]
    assert cache.get(b"bob", b"other", 1) is None
    assert cache.get(b"bo", b"bpw", 1) is None  # the same bytes, split elsewhere
    clock.advance(59.9)
    assert cache.get(b"bob", b"pw", 1) == "bob"  # a hit does not extend it
    clock.advance(0.1)
    assert cache.get(b"bob", b"pw", 1) is None and len(cache) == 0


def test_theCacheKeyIsAnHMACUnderASecretNotThePassword():
    one, two = (VerifiedCredentials(Clock(), 60, 10, secret=s) for s in (b"a" * 32, b"b" * 32))
    for cache in (one, two):
        cache.validFor(1)
        cache.put(b"bob", b"hunter2-password", "bob", 1)
    (key1,), (key2,) = one._entries, two._entries
    assert key1 != key2 and len(key1) == 32
    assert b"hunter2" not in key1 and b"hunter2" not in repr(one._entries).encode()


def test_theCacheIsBoundedAndDropsTheLeastRecentlyUsed():
    cache = VerifiedCredentials(Clock(), ttl=60, maxEntries=3)
    cache.validFor(1)
    for n in range(3):
        cache.put(b"user%d" % n, b"pw", f"user{n}", 1)
    assert cache.get(b"user0", b"pw", 1) == "user0"  # now the most recently used
    cache.put(b"user3", b"pw", "user3", 1)
    assert len(cache) == 3
    assert cache.get(b"user1", b"pw", 1) is None
    assert cache.get(b"user0", b"pw", 1) == "user0"


def test_aChangedPasswordFileEmptiesTheCacheAndAnOlderCheckIsNotStored():
    cache = VerifiedCredentials(Clock(), ttl=60, maxEntries=10)
    cache.validFor(1)
    cache.put(b"bob", b"pw", "bob", 1)
    assert cache.get(b"bob", b"pw", 2) is None and len(cache) == 0
    cache.put(b"bob", b"pw", "bob", 1)  # checked against the old file
    assert cache.get(b"bob", b"pw", 2) is None


def test_aZeroTTLTurnsTheCacheOff():
    cache = VerifiedCredentials(Clock(), ttl=0, maxEntries=10)
    cache.validFor(1)
    cache.put(b"bob", b"pw", "bob", 1)
    assert cache.get(b"bob", b"pw", 1) is None


class CountingThread:
    def __init__(self):
        self.calls = 0

    def __call__(self, f, *args):
        self.calls += 1
        return maybeDeferred(f, *args)


def checkOnce(checker, user, password):
    result = []
    checker.requestAvatarId(UsernamePassword(user, password)).addBoth(result.append)
    return result[0]


def test_theCheckerChecksARightPasswordOnceAndAWrongOneEveryTime(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text("carol:" + bcryptHash("correct horse", rounds=4) + "\n")
    clock = Clock()
    inThread = CountingThread()
    checker = HtpasswdChecker(str(path), inThread, VerifiedCredentials(clock, 60, 10))
    assert checkOnce(checker, b"carol", b"correct horse") == "carol"
    assert checkOnce(checker, b"carol", b"correct horse") == "carol"
    assert inThread.calls == 1
    for _ in range(2):
        assert isinstance(checkOnce(checker, b"carol", b"wrong"), Failure)
        assert isinstance(checkOnce(checker, b"nobody", b"correct horse"), Failure)
    assert inThread.calls == 5
    clock.advance(60)
    assert checkOnce(checker, b"carol", b"correct horse") == "carol"
    assert inThread.calls == 6


def test_aChangedHtpasswdIsCheckedAgain(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text("carol:" + bcryptHash("old password", rounds=4) + "\n")
    inThread = CountingThread()
    checker = HtpasswdChecker(str(path), inThread, VerifiedCredentials(Clock(), 60, 10))
    assert checkOnce(checker, b"carol", b"old password") == "carol"
    path.write_text("carol:" + bcryptHash("new password", rounds=4) + "\n# changed\n")
    assert isinstance(checkOnce(checker, b"carol", b"old password"), Failure)
    assert checkOnce(checker, b"carol", b"new password") == "carol"


def test_aCheckStartedBeforeTheFileChangedIsNotRemembered(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text("carol:" + bcryptHash("old password", rounds=4) + "\n")
    held = []

    def later(f, *args):
        d = Deferred()
        held.append((d, f, args))
        return d

    cache = VerifiedCredentials(Clock(), 60, 10)
    checker = HtpasswdChecker(str(path), later, cache)
    result = []
    checker.requestAvatarId(UsernamePassword(b"carol", b"old password")).addBoth(result.append)
    path.write_text("carol:" + bcryptHash("new password", rounds=4) + "\n# changed\n")
    checker._file.entries()  # another request sees the change meanwhile
    cache.validFor(checker._file.generation)
    d, f, args = held.pop()
    d.callback(f(*args))
    assert result == ["carol"]  # it passed against the file it read...
    assert len(cache) == 0  # ...and is not remembered against the new one


def test_theSameCredentialsSentDuringTheirCheckShareIt(tmp_path):
    """
    A client's first requests, sent together, all miss the cache: they wait
    for the one check rather than queueing one each (at start-up under load
    they filled the queue: 503).  Other credentials get their own check.
    """
    path = tmp_path / "htpasswd"
    path.write_text("carol:" + bcryptHash("correct horse", rounds=4) + "\n")
    held = []

    def later(f, *args):
        d = Deferred()
        held.append((d, f, args))
        return d

    checker = HtpasswdChecker(str(path), later, VerifiedCredentials(Clock(), 60, 10))
    results = {}
    for n, guess in enumerate([b"correct horse"] * 3 + [b"wrong"] * 2):
        checker.requestAvatarId(UsernamePassword(b"carol", guess)).addBoth(lambda r, n=n: results.update({n: r}))
    assert len(held) == 2 and results == {}
    for d, f, args in held:
        d.callback(f(*args))
    assert [results[n] for n in range(3)] == ["carol"] * 3
    assert all(results[n].check(UnauthorizedLogin) for n in (3, 4))
    assert checker._running == {}


def test_anUnreadablePasswordFileIsAClearErrorNotAFault(tmp_path):
    from twisted.logger import globalLogPublisher

    path = tmp_path / "htpasswd"
    path.mkdir()  # stat works, open does not (even for root)
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        watched = WatchedFile(str(path), tuple)
        for _ in range(3):
            assert watched.entries() == {}
        checker = HtpasswdChecker(str(path), synchronously)
        assert checkOnce(checker, b"carol", b"x").check(UnauthorizedLogin)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    said = [e for e in logged if e.get("event") == "password_file_unreadable"]
    assert len(said) == 2  # once per WatchedFile, not per request
    path.rmdir()  # made readable: read again at once
    path.write_text("carol:" + bcryptHash("pw", rounds=4) + "\n")
    assert set(watched.entries()) == {"carol"}


# The bounded check pool.


def test_atMostThreadsPlusWaitingChecksAtOnceThenBusy():
    held = []

    def inThread(f, *args):
        d = Deferred()
        held.append(d)
        return d

    calls = BoundedCalls(inThread, threads=2, waiting=1)
    results = [calls(lambda: None) for _ in range(3)]
    refused = []
    calls(lambda: None).addErrback(refused.append)
    assert calls.pending == 3 and len(held) == 3
    assert refused[0].check(ChecksBusy) and refused[0].value.retryAfter == 1
    held[0].callback(True)
    assert calls.pending == 2
    calls(lambda: None)
    assert calls.pending == 3 and len(held) == 4
    held[1].errback(RuntimeError("a check that raised still frees its place"))
    results[1].addErrback(lambda f: None)
    assert calls.pending == 2


# `make user`: the password files are 0600, replaced atomically.


def test_makeUserWritesBothFilesWithMode0600(tmp_path, monkeypatch):
    config = tmp_path / "stack.toml"
    config.write_text('[auth]\nhtpasswd = "auth/htpasswd"\nhtdigest = "auth/htdigest"\nhomes = "auth/home"\n')
    (tmp_path / "auth").mkdir()
    existing = tmp_path / "auth" / "htpasswd"
    existing.write_text("alice:$2y$04$notarealhash\n")
    existing.chmod(0o644)  # as a checkout holds the demo file
    monkeypatch.setenv("PASSWORD", "a password of carol's")
    for name in ("carol", "carol", "dave"):
        assert users.main(["set", name, "--config", str(config)]) == 0
        for kind in ("htpasswd", "htdigest"):
            path = tmp_path / "auth" / kind
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (kind, oct(path.stat().st_mode))
    lines = existing.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["alice", "carol", "dave"]
    assert sorted(os.listdir(tmp_path / "auth")) == ["home", "htdigest", "htpasswd"]  # no leftovers
    checker = HtpasswdChecker(str(existing), synchronously)
    assert checkOnce(checker, b"carol", b"a password of carol's") == "carol"
