"""
The auth service over loopback: Basic and Digest through the front, a
Digest challenge from one replica answered at another, each user confined to
their own public_html (traversal corpus, a symbolic link leading out), wrong
and missing credentials, and the 429 after repeated failures; then the
hostile clients of issue 9: checks abandoned midway, user names the throttle
read otherwise than the guard, made-up schemes, and more checks than the
check pool and its queue hold.
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


# The failures through the front come from loopback addresses of their own:
# the front forwards the address it sees, and three failures of 127.0.0.1 on
# one replica would lock every other test here out of it for 30 s (a 429
# that depended on which replica the balancer picked).  A forged
# X-Forwarded-For does not help: the front drops it.  Alice and bob fail
# twice each here, once short of locking out their names.
@pytest.mark.parametrize(
    "credentials, source",
    [
        (("alice", "wrong"), "127.0.0.11"),
        (("bob", ""), "127.0.0.12"),
        (("nobody", "wonderland-2026"), "127.0.0.13"),
        (("bob", "wonderland-2026"), "127.0.0.14"),
    ],
)
def test_wrongBasicCredentialsGet401(auth, credentials, source):
    response, body = request(front(auth), "GET", "/auth/", headers={
        **basic(*credentials), "X-Forwarded-For": "198.51.100.1"}, source=source)
    assert response.status == 401


def digestLogin(port, user, password, path="/auth/", source=None):
    response, _ = request(port, "GET", path, source=source)
    challenge = response.headers.get_all("WWW-Authenticate")[1]
    header = digestAuthorization(challenge, user, password, "GET", path)
    return request(port, "GET", path, headers={"Authorization": header}, source=source)


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
    response, _ = digestLogin(front(auth), "alice", "not-it", source="127.0.0.15")
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



# Hostile clients (issue 9): the attacks on the throttle, the labels and the
# password checks, against a service of their own (its own users, so that
# the lockouts here touch no other test), straight to its port: it trusts
# loopback's X-Forwarded-For, so each attempt can come from its own address.

SLOW = "victor", "grace"  # cost 12: a check takes long enough to leave during it


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from webstack.auth.passwords import bcryptHash, htdigestHash

    base = tmp_path_factory.mktemp("hostile")
    names = ["victor", "grace", "carol", "dave", "heidi", "ivan"]
    htpasswd, htdigest = [], []
    for name in names:
        password = f"{name}-password"
        rounds = 12 if name in SLOW else 4
        htpasswd.append(f"{name}:{bcryptHash(password, rounds=rounds)}")
        htdigest.append(f"{name}:webstack:{htdigestHash(name, 'webstack', password)}")
        public = base / "home" / name / "public_html"
        public.mkdir(parents=True)
        (public / "index.html").write_text(f"<h1>{name}'s public_html</h1>\n")
    (base / "htpasswd").write_text("\n".join(htpasswd) + "\n")
    (base / "htdigest").write_text("\n".join(htdigest) + "\n")
    env = {
        "WEBSTACK_AUTH_HOMES": str(base / "home"),
        "WEBSTACK_AUTH_HTPASSWD": str(base / "htpasswd"),
        "WEBSTACK_AUTH_HTDIGEST": str(base / "htdigest"),
        "WEBSTACK_AUTH_DIGEST_KEY": "test-key-of-the-hostile-tests",
        "WEBSTACK_AUTH_MAX_FAILURES": "4",
        "WEBSTACK_AUTH_LOCKOUT_SECONDS": "60",
        "WEBSTACK_AUTH_CHECK_THREADS": "1",
        "WEBSTACK_AUTH_CHECK_QUEUE": "2",
    }
    with LocalStack(ephemeral=True, env=env, backends=("auth",)) as stack:
        yield stack


def password(name):
    return f"{name}-password"


def attempt(port, headers, client):
    response, body = request(port, "GET", "/auth/", headers={**headers, "X-Forwarded-For": client})
    return response.status


def samples(port, name):
    """
    The samples of one metric in the service's /metrics: {labels: value}.
    """
    import re

    _, body = request(port, "GET", "/metrics")
    found = {}
    for line in body.decode().splitlines():
        match = re.match(rf"{name}(\{{[^}}]*\}})? (\S+)$", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def basicAttempts(port):
    return sum(v for k, v in samples(port, "auth_attempts_total").items() if 'scheme="basic"' in k)


def assertNothingUnhandled(stack):
    """
    No error, critical or traceback in the auth service's log.
    """
    bad = [
        e for e in stack.services["auth"].events()
        if e.get("level") in ("error", "critical") or "traceback" in e
    ]
    assert bad == [], bad[:3]


def abandon(port, headers, client):
    """
    Send a request, then close the socket while its check runs.
    """
    import socket
    import time

    s = socket.create_connection(("127.0.0.1", port))
    lines = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "X-Forwarded-For": client}.items())
    s.sendall(f"GET /auth/ HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
    time.sleep(0.05)
    s.close()


def test_attemptsAbandonedDuringTheCheckStillLockOut(hostile):
    """
    Row 4: wrong passwords for one user, each fourth followed by one the
    client abandons during the bcrypt check.  The abandoned one ended with
    the default status (200) and counted as a success, resetting the
    throttle: 32 wrong passwords in a row, never a 429.  Now it is a
    failure, and the user is locked out at the fourth.
    """
    from .support import waitFor

    port = hostile.services["auth"].port
    user = "victor"
    statuses = []
    for n in range(32):
        headers = basic(user, f"guess-{n}")
        client = f"198.18.4.{n}"
        if n % 4 == 3:
            before = basicAttempts(port)
            abandon(port, headers, client)
            waitFor(lambda: basicAttempts(port) > before, timeout=15, what="the abandoned check judged")
            continue
        statuses.append(attempt(port, headers, client))
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, statuses
    assert statuses == [401, 401, 401, 429]
    # The user is locked out, whatever the address, with the right password.
    assert attempt(port, basic(user, password(user)), "198.18.4.200") == 429
    assert samples(port, "auth_lockouts_total")[""] >= 1
    assertNothingUnhandled(hostile)


def test_theThrottleCountsTheUserTheGuardDecoded(hostile):
    """
    The guard decodes Basic without its padding; the throttle's own strict
    decoder found no user there, so the user's key never counted.
    """
    port = hostile.services["auth"].port
    user = "heidi"
    for n in range(4):
        encoded = base64.b64encode(f"{user}:guess-{n}".encode()).decode()
        assert encoded.endswith("=")
        headers = {"Authorization": "Basic " + encoded.rstrip("=")}
        assert attempt(port, headers, f"198.18.5.{n}") == 401
    assert attempt(port, basic(user, password(user)), "198.18.5.200") == 429
    assertNothingUnhandled(hostile)


def test_onlyASuccessOfThatSameUserResetsItsKey(hostile):
    """
    A Digest header may name a user twice: the throttle read the first
    username, the guard checks the last.  dave's success, naming carol
    first, reset carol's failures.  Now a success resets only the key of
    the user the checker passed; carol's own success resets hers.
    """
    from .support import digestAuthorization

    port = hostile.services["auth"].port
    for n in range(3):
        assert attempt(port, basic("carol", f"guess-{n}"), f"198.18.6.{n}") == 401
    client = "198.18.6.100"
    response, _ = request(port, "GET", "/auth/", headers={"X-Forwarded-For": client})
    challenge = response.headers.get_all("WWW-Authenticate")[1]
    real = digestAuthorization(challenge, "dave", password("dave"), "GET", "/auth/")
    forged = 'Digest username="carol", ' + real[len("Digest "):]
    response, body = request(port, "GET", "/auth/", headers={"Authorization": forged, "X-Forwarded-For": client})
    assert response.status == 200 and b"dave's public_html" in body
    assert attempt(port, basic("carol", "guess-3"), "198.18.6.3") == 401
    assert attempt(port, basic("carol", password("carol")), "198.18.6.200") == 429
    # ivan's own success resets ivan's failures.
    for attempts in (("x", "x", "x", password("ivan")), ("x", "x", "x")):
        for n, guess in enumerate(attempts):
            status = attempt(port, basic("ivan", guess), f"198.18.7.{n}")
            assert status == (200 if guess == password("ivan") else 401)
    assertNothingUnhandled(hostile)


def test_madeUpSchemesLeaveOnlyFixedLabels(hostile):
    """
    Row 1 (auth): the attempts were labelled by the client's scheme; 300
    made-up schemes made 300 series.  Now: basic, digest or other.
    """
    port = hostile.services["auth"].port
    for n in range(300):
        headers = {"Authorization": f"Scheme{n} token"}
        assert attempt(port, headers, f"198.19.{n // 200}.{n % 200}") == 401
    series = samples(port, "auth_attempts_total")
    schemes = {label.split('scheme="')[1].split('"')[0] for label in series}
    assert schemes == {"basic", "digest", "other"}
    assert series['{outcome="failed",scheme="other"}'] >= 300
    assertNothingUnhandled(hostile)


def test_checksBeyondThePoolAndItsQueueGet503AndACachedLoginStillPasses(hostile):
    """
    Basic under load: bcrypt ran on the reactor's shared pool, and every
    check waited behind all the others.  Now the checks have their own pool
    (one thread here) and at most check_queue (2) wait: more get 503 with
    Retry-After at once.  A login checked a moment ago is remembered, so it
    passes even then, without a check.
    """
    import socket

    from .support import readAll

    port = hostile.services["auth"].port
    user = "grace"
    assert attempt(port, basic(user, password(user)), "198.18.8.1") == 200
    hits = samples(port, "auth_cache_hits_total")[""]
    sockets = []
    for n in range(6):
        s = socket.create_connection(("127.0.0.1", port))
        credentials = basic(user, f"guess-{n}")["Authorization"]
        s.sendall(
            f"GET /auth/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {credentials}\r\n"
            f"X-Forwarded-For: 198.18.8.{10 + n}\r\n\r\n".encode()
        )
        sockets.append(s)
    # While those are checked, the right password again: from the cache.
    assert attempt(port, basic(user, password(user)), "198.18.8.2") == 200
    answers = [readAll(s, timeout=30) for s in sockets]
    for s in sockets:
        s.close()
    statuses = sorted(int(a.split(b" ", 2)[1]) for a in answers)
    assert statuses == [401, 401, 401, 503, 503, 503], statuses
    for answer in answers:
        if answer.startswith(b"HTTP/1.1 503"):
            assert b"\r\nRetry-After: 1\r\n" in answer
    assert samples(port, "auth_checks_busy_total")[""] == 3
    assert samples(port, "auth_cache_hits_total")[""] == hits + 1
    assert samples(port, "auth_checks_limit")[""] == 3
    assertNothingUnhandled(hostile)
