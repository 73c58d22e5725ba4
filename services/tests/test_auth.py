"""
The auth service over loopback: Basic and Digest through the front, a
Digest challenge from one replica answered at another, each user confined to
their own public_html (traversal corpus, a symbolic link leading out), wrong
and missing credentials, and the 429 after repeated failures.
"""

import base64
import os
import shutil
from pathlib import Path

import pytest

from webstack.localstack import LocalStack

from .support import digestAuthorization, onePiece, rawGet, request

pytestmark = pytest.mark.integration

HOMES = Path(__file__).resolve().parents[2] / "config" / "auth" / "home"
ALICE = ("alice", "wonderland-2026")
BOB = ("bob", "builder-2026")
SECRET = b"BOBS-DIARY"


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    homes = tmp_path_factory.mktemp("homes")
    shutil.copytree(HOMES, homes, dirs_exist_ok=True)
    (homes / "bob" / "public_html" / "diary.txt").write_bytes(SECRET)
    (homes / "outside.txt").write_bytes(SECRET)
    os.symlink(homes / "outside.txt", homes / "alice" / "public_html" / "link-out.txt")
    os.symlink(homes / "bob" / "public_html", homes / "alice" / "public_html" / "bobs")
    env = {
        "WEBSTACK_AUTH_HOMES": str(homes),
        "WEBSTACK_AUTH_DIGEST_KEY": "test-key-shared-by-both-replicas",
        "WEBSTACK_AUTH_MAX_FAILURES": "3",
        "WEBSTACK_AUTH_LOCKOUT_SECONDS": "30",
    }
    with LocalStack(ephemeral=True, env=env, backends=("auth",), replicas={"auth": 2}) as stack:
        yield stack


def front(stack):
    return stack.services["front"].port


def test_noCredentialsGetBothChallenges(auth):
    response, _ = request(front(auth), "GET", "/auth/")
    assert response.status == 401
    challenges = response.headers.get_all("WWW-Authenticate")
    assert challenges[0] == 'basic realm="webstack"'
    assert challenges[1].startswith("digest ") and 'realm="webstack"' in challenges[1]


@pytest.mark.parametrize("user, other", [(ALICE, "bob"), (BOB, "alice")])
def test_basicGivesEachUserTheirOwnPublicHTML(auth, user, other):
    response, body = request(front(auth), "GET", "/auth/", headers=basic(*user))
    assert response.status == 200
    assert f"{user[0]}'s public_html".encode() in body
    assert other.encode() not in body.split(b"<h1>")[1]


@pytest.mark.parametrize(
    "credentials",
    [("alice", "wrong"), ("alice", ""), ("nobody", "wonderland-2026"), ("bob", "wonderland-2026")],
)
def test_wrongBasicCredentialsGet401(auth, credentials):
    response, body = request(front(auth), "GET", "/auth/", headers={
        **basic(*credentials), "X-Forwarded-For": "198.51.100.1"})
    assert response.status == 401


def digestLogin(port, user, password, path="/auth/"):
    response, _ = request(port, "GET", path)
    challenge = response.headers.get_all("WWW-Authenticate")[1]
    header = digestAuthorization(challenge, user, password, "GET", path)
    return request(port, "GET", path, headers={"Authorization": header})


def test_aDigestChallengeIsAnsweredThroughTheFront(auth):
    for _ in range(4):  # over both replicas
        response, body = digestLogin(front(auth), *BOB)
        assert response.status == 200, body
        assert b"bob's public_html" in body


def test_aDigestChallengeFromOneReplicaWorksOnTheOther(auth):
    """
    Stock Digest signs challenges with a key per process: a challenge from
    one replica fails at another.  Here the key is shared, and the client's
    address is the one the front forwards.
    """
    one, two = auth.services["auth"].port, auth.services["auth-2"].port
    response, _ = request(one, "GET", "/auth/", headers={"X-Forwarded-For": "203.0.113.5"})
    challenge = response.headers.get_all("WWW-Authenticate")[1]
    header = digestAuthorization(challenge, *ALICE, "GET", "/auth/")
    for port in (one, two):
        response, body = request(
            port, "GET", "/auth/", headers={"Authorization": header, "X-Forwarded-For": "203.0.113.5"}
        )
        assert response.status == 200, body
    response, _ = request(two, "GET", "/auth/", headers={"Authorization": header, "X-Forwarded-For": "203.0.113.6"})
    assert response.status == 401


def test_aWrongDigestPasswordGets401(auth):
    response, _ = digestLogin(front(auth), "alice", "not-it")
    assert response.status == 401


TRAVERSAL = [
    b"/auth/../bob/public_html/diary.txt",
    b"/auth/%2e%2e/bob/public_html/diary.txt",
    b"/auth/..%2f..%2fbob%2fpublic_html%2fdiary.txt",
    b"/auth/%252e%252e/bob/public_html/diary.txt",
    b"/auth/link-out.txt",
    b"/auth/bobs/diary.txt",
    b"/auth/%2fetc%2fpasswd",
    b"/auth/..%5c..%5cbob%5cpublic_html%5cdiary.txt",
]


@pytest.mark.parametrize("via", ["front", "auth"])
@pytest.mark.parametrize("path", TRAVERSAL)
def test_aliceCanNeverReadBobsFilesOrAnythingOutside(auth, via, path):
    headers = b"".join(f"{k}: {v}\r\n".encode() for k, v in basic(*ALICE).items())
    answer = rawGet(auth.services[via].port, path, headers)
    assert int(answer.split(b" ", 2)[1]) in (400, 401, 404)
    assert SECRET not in answer and b"root:" not in answer


def test_bobReadsHisOwnDiary(auth):
    response, body = request(front(auth), "GET", "/auth/diary.txt", headers=basic(*BOB))
    assert response.status == 200 and body == SECRET
    assert response.headers["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize("path, status", [(b"/auth/no-such-file.txt", 404), (b"/auth/", 200)])
def test_answersWrittenInOnePieceGoWithTheirLength(auth, path, status):
    credentials = basic(*ALICE)["Authorization"].encode()
    port = auth.services[auth.replicaNames("auth")[0]].port
    head, body = onePiece(rawGet(port, path, b"Authorization: " + credentials + b"\r\n"))
    assert head.startswith(b"http/1.1 %d" % status)


def test_repeatedFailuresGet429WithRetryAfter(auth):
    """
    Three failures for alice from one address lock out both the address and
    the user name, even with the right password; bob from elsewhere is not
    affected.  The lockouts are counted.
    """
    port = auth.services["auth"].port
    attacker = {"X-Forwarded-For": "192.0.2.66"}
    for _ in range(3):
        response, _ = request(port, "GET", "/auth/", headers={**basic("alice", "guess"), **attacker})
        assert response.status == 401
    response, body = request(port, "GET", "/auth/", headers={**basic(*ALICE), **attacker})
    assert response.status == 429
    assert 0 < int(response.headers["Retry-After"]) <= 30
    response, _ = request(port, "GET", "/auth/", headers={**basic(*ALICE), "X-Forwarded-For": "192.0.2.67"})
    assert response.status == 429
    response, _ = request(port, "GET", "/auth/", headers={**basic(*BOB), "X-Forwarded-For": "192.0.2.67"})
    assert response.status == 200
    _, metrics = request(port, "GET", "/metrics")
    assert b"auth_lockouts_total 2.0" in metrics
    assert b'auth_attempts_total{outcome="failed",scheme="basic"}' in metrics

