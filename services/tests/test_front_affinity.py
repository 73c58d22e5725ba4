"""
The front's routing cookie, in memory: tokens, choosing a replica from a
request's cookies, the Set-Cookie it issues, and the settings that give it a
key (or refuse to start without one).
"""

import base64
import re
from dataclasses import dataclass

import pytest
from twisted.python.filepath import FilePath

from webstack.front.affinity import (
    DEFAULT_NAME,
    TOKEN_LENGTH,
    RouteCookie,
    cookieValue,
    routeCookie,
)
from webstack.front.settings import MIN_ROUTE_KEY_BYTES, loadSettings
from webstack.runtime.config import ConfigError

KEY = b"0123456789abcdef0123456789abcdef"
OTHER_KEY = b"fedcba9876543210fedcba9876543210"


@dataclass
class Replica:
    address: str


A, B, C = Replica("10.0.0.1:8080"), Replica("10.0.0.2:8080"), Replica("[fd00::3]:8080")
REPLICAS = [A, B, C]


def cookie(key=KEY):
    return RouteCookie(key, "/session/")


def header(*pairs: bytes) -> list[bytes]:
    return [b"; ".join(pairs)]


# Tokens.


def test_theTokenIsShortOpaqueAndCookieSafe():
    token = cookie().token(A.address)
    assert len(token) == TOKEN_LENGTH
    assert re.fullmatch(rb"[A-Za-z0-9_-]+", token)
    assert b"10.0.0.1" not in token and b"8080" not in token
    assert b"10.0.0.1" not in base64.urlsafe_b64decode(token + b"==")


def test_theSameKeyGivesTheSameTokenInEveryFront():
    """
    Two fronts (workers, replicas, or one before and after a restart) with
    the same key agree on every replica's cookie.
    """
    one, two = cookie(), cookie()
    assert one.token(A.address) == two.token(A.address)
    assert two.choose(header(b"WEBSTACK_ROUTE=" + one.token(B.address)), REPLICAS) is B


def test_anotherKeyOrAnotherAddressGivesAnotherToken():
    assert cookie().token(A.address) != cookie(OTHER_KEY).token(A.address)
    assert cookie().token(A.address) != cookie().token(B.address)
    assert cookie().token("10.0.0.1:8080") != cookie().token("10.0.0.1:8081")


def test_tokensAreCached():
    routing = cookie()
    assert routing.token(A.address) is routing.token(A.address)


def test_theKeyIsNeverShown():
    assert KEY.decode() not in repr(cookie())


# Choosing a replica.


def test_theCookieChoosesItsReplica():
    routing = cookie()
    for replica in REPLICAS:
        value = b"WEBSTACK_ROUTE=" + routing.token(replica.address)
        assert routing.choose([value], REPLICAS) is replica


def test_noCookieChoosesNothing():
    routing = cookie()
    assert routing.choose([], REPLICAS) is None
    assert routing.choose([b""], REPLICAS) is None
    assert routing.choose(header(b"TWISTED_SESSION=abc"), REPLICAS) is None


def test_aReplicaThatIsNotOfferedIsNotChosen():
    """
    The proxy passes only the available replicas not yet tried: a cookie
    naming another (gone, ejected, failed) falls back to balancing.
    """
    routing = cookie()
    value = header(b"WEBSTACK_ROUTE=" + routing.token(A.address))
    assert routing.choose(value, [B, C]) is None
    assert routing.choose(value, []) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t + b"A",  # too long
        lambda t: t[:-1] + (b"A" if t[-1:] != b"A" else b"B"),  # one character off
        lambda t: t.lower() if t != t.lower() else t.upper(),  # case changed
        lambda t: b"10.0.0.1:8080",  # the address itself
        lambda t: base64.urlsafe_b64encode(b"10.0.0.1:8080")[:TOKEN_LENGTH],
        lambda t: b"",
    ],
)
def test_forgedValuesChooseNothing(mangle):
    routing = cookie()
    forged = mangle(routing.token(A.address))
    assert routing.choose(header(b"WEBSTACK_ROUTE=" + forged), REPLICAS) is None


def test_aCookieOfAnotherKeyChoosesNothing():
    value = header(b"WEBSTACK_ROUTE=" + cookie(OTHER_KEY).token(A.address))
    assert cookie().choose(value, REPLICAS) is None


def test_onlyTheExactNameCounts():
    routing = cookie()
    token = routing.token(A.address)
    for name in (b"webstack_route", b"XWEBSTACK_ROUTE", b"WEBSTACK_ROUTEX", b"WEBSTACK"):
        assert routing.choose(header(name + b"=" + token), REPLICAS) is None
    other = RouteCookie(KEY, "/session/", b"OTHER")
    assert other.choose(header(b"WEBSTACK_ROUTE=" + token), REPLICAS) is None
    assert other.choose(header(b"OTHER=" + token), REPLICAS) is A


def test_cookiesAmongOthersAndAcrossHeaders():
    routing = cookie()
    token = routing.token(B.address)
    assert routing.choose([b"a=1; WEBSTACK_ROUTE=" + token + b"; b=2"], REPLICAS) is B
    assert routing.choose([b"a=1;WEBSTACK_ROUTE=" + token], REPLICAS) is B
    assert routing.choose([b"a=1", b"b=2", b"WEBSTACK_ROUTE=" + token], REPLICAS) is B
    assert routing.choose([b"  WEBSTACK_ROUTE = " + token + b"  ;c=3"], REPLICAS) is B
    assert routing.choose([b'WEBSTACK_ROUTE="' + token + b'"'], REPLICAS) is B


def test_theFirstOccurrenceWins():
    """
    Browsers send the cookie of the most specific path first; a second one
    (another path's, or a stale one) does not override it.
    """
    routing = cookie()
    a, b = routing.token(A.address), routing.token(B.address)
    assert routing.choose([b"WEBSTACK_ROUTE=%s; WEBSTACK_ROUTE=%s" % (a, b)], REPLICAS) is A
    assert routing.choose([b"WEBSTACK_ROUTE=" + b, b"WEBSTACK_ROUTE=" + a], REPLICAS) is B
    assert routing.choose([b"WEBSTACK_ROUTE=forged; WEBSTACK_ROUTE=" + a], REPLICAS) is None


def test_malformedPairsAreSkipped():
    routing = cookie()
    token = routing.token(C.address)
    for raw in (
        b";;; WEBSTACK_ROUTE=" + token,
        b"WEBSTACK_ROUTE; WEBSTACK_ROUTE=" + token,
        b"=; =x; WEBSTACK_ROUTE=" + token,
        b"\xff\xfe=\x00; WEBSTACK_ROUTE=" + token,
    ):
        assert routing.choose([raw], REPLICAS) is C, raw
    assert routing.choose([b"WEBSTACK_ROUTE"], REPLICAS) is None
    assert routing.choose([b"WEBSTACK_ROUTE="], REPLICAS) is None
    assert routing.choose([b"WEBSTACK_ROUTE=\xff" * 30], REPLICAS) is None


def test_cookieValue():
    assert cookieValue([b"a=1; b=2=3"], b"b") == b"2=3"
    assert cookieValue([b"a=1"], b"b") is None
    assert cookieValue([], b"b") is None


# Issuing it.


def test_setCookie():
    routing = cookie()
    token = routing.token(A.address)
    assert routing.setCookie(A.address, secure=False) == (
        b"WEBSTACK_ROUTE=" + token + b"; Path=/session/; HttpOnly; SameSite=Lax"
    )
    assert routing.setCookie(A.address, secure=True) == (
        b"WEBSTACK_ROUTE=" + token + b"; Path=/session/; HttpOnly; SameSite=Lax; Secure"
    )


def test_theIssuedCookieLastsTheBrowserSession():
    value = cookie().setCookie(A.address, secure=True).lower()
    assert b"max-age" not in value and b"expires" not in value


def test_whatIsIssuedIsWhatIsRead():
    routing = cookie()
    issued = routing.setCookie(B.address, secure=False).split(b";")[0]
    assert routing.choose([b"x=y; " + issued], REPLICAS) is B


def test_needsSetting():
    """
    The response gives the cookie unless the request already named the
    replica that answered.
    """
    routing = cookie()
    mine = b"WEBSTACK_ROUTE=" + routing.token(A.address)
    assert routing.needsSetting([], A.address)
    assert routing.needsSetting([b"a=1"], A.address)
    assert not routing.needsSetting([mine], A.address)
    assert not routing.needsSetting([b"a=1", mine], A.address)
    assert routing.needsSetting([mine], B.address)
    assert routing.needsSetting([b"WEBSTACK_ROUTE=forged"], A.address)
    assert routing.needsSetting([b"WEBSTACK_ROUTE=" + cookie(OTHER_KEY).token(A.address)], A.address)


def test_stripKeepsEveryOtherCookie():
    routing = cookie()
    token = routing.token(A.address)
    assert routing.strip([b"a=1; WEBSTACK_ROUTE=" + token + b"; b=2"]) == [b"a=1; b=2"]
    assert routing.strip([b"WEBSTACK_ROUTE=" + token, b"c=3"]) == [b"c=3"]
    assert routing.strip([b"a=1", b"XWEBSTACK_ROUTE=4"]) == [b"a=1", b"XWEBSTACK_ROUTE=4"]
    assert routing.strip([]) == []


@pytest.mark.parametrize(
    "key, path, name",
    [
        (b"", "/session/", DEFAULT_NAME),
        (KEY, "session/", DEFAULT_NAME),
        (KEY, "/a;b/", DEFAULT_NAME),
        (KEY, "/a b/", DEFAULT_NAME),
        (KEY, "/session/", b"bad name"),
        (KEY, "/session/", b"a=b"),
        (KEY, "/session/", b""),
    ],
)
def test_whatCannotBeAHeaderIsRefused(key, path, name):
    with pytest.raises(ValueError):
        RouteCookie(key, path, name)


# Settings.


def sticky(**front):
    return {
        "front": {
            **front,
            "routes": {
                "session": {"prefix": "/session/", "sticky": True},
                "async": {"prefix": "/async/"},
            },
        }
    }


def load(document, environ=None, configDir=None):
    return loadSettings(document, environ or {}, "stack.toml", configDir)


def test_theKeyComesFromTheSetting(tmp_path):
    settings = load(sticky(route_key=KEY.decode()), configDir=FilePath(str(tmp_path)))
    assert settings.routeKey == KEY
    assert KEY.decode() not in repr(settings)


def test_theKeyComesFromTheEnvironment(tmp_path):
    settings = load(
        sticky(), {"WEBSTACK_FRONT_ROUTE_KEY": KEY.decode()}, FilePath(str(tmp_path))
    )
    assert settings.routeKey == KEY


def test_theKeyComesFromTheFileNextToStackToml(tmp_path):
    (tmp_path / "front").mkdir()
    (tmp_path / "front" / "route.key").write_bytes(KEY + b"\n")
    settings = load(sticky(), configDir=FilePath(str(tmp_path)))
    assert settings.routeKey == KEY
    # By default, relative to the directory of the file the settings came from.
    settings = loadSettings(sticky(), {}, str(tmp_path / "stack.toml"))
    assert settings.routeKey == KEY


def test_theKeyFileMayBeElsewhere(tmp_path):
    (tmp_path / "k").write_bytes(OTHER_KEY)
    settings = load(sticky(route_key_file=str(tmp_path / "k")), configDir=FilePath("/nonexistent"))
    assert settings.routeKey == OTHER_KEY
    settings = load(sticky(route_key_file="k"), configDir=FilePath(str(tmp_path)))
    assert settings.routeKey == OTHER_KEY


def test_theSettingWinsOverTheFile(tmp_path):
    (tmp_path / "front").mkdir()
    (tmp_path / "front" / "route.key").write_bytes(OTHER_KEY)
    settings = load(sticky(route_key=KEY.decode()), configDir=FilePath(str(tmp_path)))
    assert settings.routeKey == KEY


@pytest.mark.parametrize(
    "front, write, message",
    [
        ({}, None, "front/route.key) does not exist"),
        ({}, b"  \n", "front/route.key) is empty"),
        ({"route_key_file": ""}, None, "front.route_key and front.route_key_file are both empty"),
        ({}, b"short", f"is too short: the routing cookie's key needs at least {MIN_ROUTE_KEY_BYTES} bytes"),
        ({"route_key": "short"}, None, "front.route_key (or WEBSTACK_FRONT_ROUTE_KEY) is too short"),
        ({"route_key_file": "../elsewhere"}, None, "leaves the config directory"),
    ],
)
def test_aStickyRouteWithoutAKeyStopsStartUp(tmp_path, front, write, message):
    """
    Without a shared key each front process would sign with its own and
    every session would lose its replica on the next worker: refuse to
    start, naming what gives the key.
    """
    if write is not None:
        (tmp_path / "front").mkdir()
        (tmp_path / "front" / "route.key").write_bytes(write)
    with pytest.raises(ConfigError) as raised:
        load(sticky(**front), configDir=FilePath(str(tmp_path)))
    text = str(raised.value)
    assert message in text
    assert "\n" not in text
    if "does not exist" in message or "empty" in message:
        assert "front.routes.session" in text
        assert "WEBSTACK_FRONT_ROUTE_KEY" in text


def test_anUnreadableKeyFileIsNamed(tmp_path):
    (tmp_path / "front" / "route.key").mkdir(parents=True)
    with pytest.raises(ConfigError) as raised:
        load(sticky(), configDir=FilePath(str(tmp_path)))
    assert "front/route.key) cannot be read: " in str(raised.value)


def test_noStickyRouteNeedsNoKey(tmp_path):
    document = {"front": {"routes": {"async": {"prefix": "/async/"}}}}
    settings = load(document, configDir=FilePath(str(tmp_path)))
    assert settings.routeKey == b""
    [route] = settings.routes
    assert route.sticky is False
    assert routeCookie(settings, route) is None


def test_stickyCookieIsGoneAndSaysWhatReplacesIt():
    document = {"front": {"routes": {"session": {"prefix": "/s/", "sticky_cookie": "X"}}}}
    with pytest.raises(ConfigError) as raised:
        load(document, {"WEBSTACK_FRONT_ROUTE_KEY": KEY.decode()})
    assert str(raised.value) == (
        "stack.toml: front.routes.session.sticky_cookie is no longer a setting:"
        " use sticky = true (the front now issues its own signed routing cookie,"
        " front.route_cookie)"
    )
    environ = {
        "WEBSTACK_FRONT_ROUTE_KEY": KEY.decode(),
        "WEBSTACK_FRONT_ROUTES_SESSION_STICKY_COOKIE": "X",
    }
    with pytest.raises(ConfigError) as raised:
        load({"front": {"routes": {"session": {"prefix": "/s/"}}}}, environ)
    assert "environment: WEBSTACK_FRONT_ROUTES_SESSION_STICKY_COOKIE" in str(raised.value)


def test_stickyComesFromTheEnvironmentToo():
    environ = {
        "WEBSTACK_FRONT_ROUTE_KEY": KEY.decode(),
        "WEBSTACK_FRONT_ROUTES_ASYNC_STICKY": "true",
    }
    settings = load(sticky(), environ)
    assert {r.name for r in settings.stickyRoutes()} == {"session", "async"}


@pytest.mark.parametrize(
    "front, routes, message",
    [
        ({"route_cookie": "a b"}, {}, "front.route_cookie = 'a b' is invalid"),
        ({"route_cookie": ""}, {}, "front.route_cookie = '' is invalid"),
        ({"route_cookie": "é"}, {}, "front.route_cookie = 'é' is invalid"),
        ({}, {"s": {"prefix": "/a;b/", "sticky": True}}, "is invalid for a sticky route"),
        ({}, {"s": {"prefix": "/é/", "sticky": True}}, "is invalid for a sticky route"),
        ({}, {"s": {"prefix": "/s/", "sticky": "yes"}}, "front.routes.s.sticky = 'yes' is invalid"),
    ],
)
def test_badCookieSettingsAreNamed(front, routes, message):
    document = {"front": {**front, "routes": routes or {"s": {"prefix": "/s/"}}}}
    with pytest.raises(ConfigError) as raised:
        load(document, {"WEBSTACK_FRONT_ROUTE_KEY": KEY.decode()})
    assert message in str(raised.value)


def test_routeCookieFromTheSettings():
    """
    How the front builds each sticky route's cookie: its prefix as the Path,
    the configured name, the key read at start-up.
    """
    environ = {"WEBSTACK_FRONT_ROUTE_KEY": KEY.decode(), "WEBSTACK_FRONT_ROUTE_COOKIE": "R"}
    settings = load(sticky(), environ)
    cookies = {route.name: routeCookie(settings, route) for route in settings.routes}
    assert cookies["async"] is None
    session = cookies["session"]
    assert session.setCookie(A.address).startswith(b"R=" + cookie().token(A.address) + b"; Path=/session/;")
