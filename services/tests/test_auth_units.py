"""
The auth service's parts in memory: password files, the throttle on a
L{Clock}, the claimed user, and whose address is believed.
"""

import base64

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from webstack.auth.app import claimedUser
from webstack.auth.digest import TrustedProxies
from webstack.auth.passwords import HtpasswdChecker, bcryptHash, htdigestHash
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


def test_claimedUser():
    basic = b"Basic " + base64.b64encode(b"erin:pw")
    assert claimedUser(request(authorization=basic)) == ("basic", "erin")
    assert claimedUser(request(authorization=b'Digest username="frank", realm="x"')) == ("digest", "frank")
    assert claimedUser(request(authorization=b"Basic !!!")) == ("basic", "")
    assert claimedUser(request()) is None


def test_onlyATrustedProxyNamesTheClient():
    proxies = TrustedProxies(["127.0.0.0/8"])
    assert proxies.clientHost(request(x_forwarded_for=b"6.6.6.6, 198.51.100.7")) == "198.51.100.7"
    assert TrustedProxies(["10.0.0.0/8"]).clientHost(request(x_forwarded_for=b"198.51.100.7")) == "127.0.0.1"
