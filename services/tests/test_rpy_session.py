"""
Two kinds of sessions behind one front: the session service's (C{/session/})
and the static service's C{.rpy} scripts' (C{/rpy/counter.rpy}).  Each keeps
its own cookie, scoped to its own routes; no response of a session may be
stored by a shared cache; and each process holds a bounded number of
sessions.  In memory on a L{Clock} for the .rpy site's logic, over loopback
through the real front and processes for the rest.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python import components
from twisted.python.filepath import FilePath

from webstack.localstack import LocalStack
from webstack.runtime.config import ConfigError
from webstack.runtime.health import Health
from webstack.runtime.metrics import HTTPMetrics
from webstack.runtime.plugin import AppContext
from webstack.runtime.settings import RuntimeSettings
from webstack.runtime.site import RouteLabeler, WebSite
from webstack.static.app import Settings, makeApp

from .support import request
from .test_session import Browser, header

CONFIG = Path(__file__).resolve().parents[2] / "config"
RPY = b"/rpy/counter.rpy"


@pytest.fixture(autouse=True)
def rpyRunsAgain(monkeypatch):
    """
    Each site made here runs counter.rpy afresh (its cache() is per site),
    registering its adapter again in this one process: allowed in tests.
    """
    monkeypatch.setattr(components, "ALLOW_DUPLICATES", True)


def rpySite(**settings):
    clock = Clock()
    registry = CollectorRegistry()
    context = AppContext(
        reactor=clock,
        runtime=RuntimeSettings(),
        settings=Settings(**settings),
        registry=registry,
        health=Health(),
        configDir=FilePath(str(CONFIG)),
    )
    app = makeApp(context)
    site = WebSite(app.resource, reactor=clock, metrics=HTTPMetrics(registry), routeLabeler=RouteLabeler(app.routes))
    app.configureSite(site)
    return site, clock, registry


# In memory: the .rpy site's sessions.


def test_theRpyCookieIsItsOwnScopedToRpy():
    site, clock, registry = rpySite()
    head, body = Browser(site, cookieName=b"TWISTED_SESSION_RPY").get(RPY)
    assert body == b"Visit #1 for you!"
    [cookie] = header(head, b"set-cookie")
    assert cookie.startswith(b"TWISTED_SESSION_RPY=")
    assert cookie.endswith(b"; Path=/rpy/; HttpOnly; SameSite=Lax")
    assert header(head, b"cache-control") == [b"private, no-store"]


def test_theRpyCookieIsSecureWhenATrustedProxySaysHTTPS():
    site, clock, registry = rpySite()
    head, _ = Browser(site, cookieName=b"TWISTED_SESSION_RPY").get(RPY, b"X-Forwarded-Proto: https\r\n")
    assert header(head, b"set-cookie")[0].endswith(b"; SameSite=Lax; Secure")
    stranger = Browser(site, peer="198.51.100.9", cookieName=b"TWISTED_SESSION_RPY")
    head, _ = stranger.get(RPY, b"X-Forwarded-Proto: https\r\n")
    assert b"Secure" not in header(head, b"set-cookie")[0]


def test_rpySessionsAreShortAndBounded():
    """
    Not Twisted's 900 s and no bound: C{rpy_session_timeout} after the last
    visit, and at most C{rpy_max_sessions}, the next one refused with 503.
    """
    site, clock, registry = rpySite(rpy_session_timeout=30.0, rpy_max_sessions=2)
    alice, bob, carol = (Browser(site, cookieName=b"TWISTED_SESSION_RPY") for _ in range(3))
    assert alice.get(RPY)[1] == b"Visit #1 for you!"
    clock.advance(10)
    assert bob.get(RPY)[1] == b"Visit #1 for you!"
    clock.advance(10)
    with capturedLogs() as events:
        head, _ = carol.get(RPY)
    assert head.startswith(b"HTTP/1.1 503 ")
    assert header(head, b"retry-after") == [b"10"]
    assert not [e for e in events if "log_failure" in e]
    assert registry.get_sample_value("sessions_refused_total") == 1
    clock.advance(15)
    # Alice's session (last visit at 0) ended at 30; Bob's (10) lives to 40.
    assert bob.get(RPY)[1] == b"Visit #2 for you!"
    assert carol.get(RPY)[1] == b"Visit #1 for you!"
    assert alice.get(RPY)[0].startswith(b"HTTP/1.1 503 ")
    assert registry.get_sample_value("sessions_active") == 2
    assert registry.get_sample_value("sessions_expired_total") == 1


def test_badRpySettingsAreRefusedByName():
    with pytest.raises(ConfigError, match=r"static\.rpy_trusted_proxies .*'nowhere'"):
        Settings(rpy_trusted_proxies="nowhere")


# Over loopback, through the front.


class Client:
    """
    A browser's cookie handling (C{http.cookiejar}: each cookie by name and
    path, sent only under its path), talking to the front.
    """

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str):
        """
        The response's status, headers and body (an error status included).
        """
        try:
            with self.opener.open(self.base + path, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()


@pytest.fixture(scope="module")
def stack():
    # The front trusts X-Forwarded-Proto, as behind a TLS terminator; only
    # test_bothCookiesAreSecureBehindHTTPS sends it.
    env = {"WEBSTACK_FRONT_TRUST_FORWARDED": "true"}
    with LocalStack(ephemeral=True, backends=("session", "static"), env=env) as running:
        yield running


def noFailureLogged(stack):
    for name in ("front", "session", "static"):
        bad = [e for e in stack.services[name].events() if "traceback" in e or e.get("level") in ("error", "critical")]
        assert bad == [], name


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/session/", "/session/counter", "/rpy/counter.rpy"])
def test_sessionResponsesAreNotStoredByCaches(stack, path):
    client = Client(stack.services["front"].port)
    for _ in range(2):  # the visit making the session, and one finding it
        status, headers, _ = client.get(path)
        assert status == 200
        assert headers["Cache-Control"] == "private, no-store"
    noFailureLogged(stack)


@pytest.mark.integration
def test_eachSessionCookieIsScopedToItsOwnRoutes(stack):
    port = stack.services["front"].port
    response, _ = request(port, "GET", "/rpy/counter.rpy")
    [cookie] = response.headers.get_all("Set-Cookie")
    name, _, attributes = cookie.partition(";")
    assert name.startswith("TWISTED_SESSION_RPY=")
    assert attributes == " Path=/rpy/; HttpOnly; SameSite=Lax"
    response, _ = request(port, "GET", "/session/counter")
    [cookie] = [c for c in response.headers.get_all("Set-Cookie") if c.startswith("TWISTED_SESSION=")]
    assert cookie.endswith("; Path=/session/; HttpOnly; SameSite=Lax")


@pytest.mark.integration
def test_bothCookiesAreSecureBehindHTTPS(stack):
    """
    A TLS terminator before the front (which trusts its C{X-Forwarded-Proto}
    here) says the client is on HTTPS: both cookies are C{Secure}.
    """
    port = stack.services["front"].port
    for path, name in (("/rpy/counter.rpy", "TWISTED_SESSION_RPY="), ("/session/", "TWISTED_SESSION=")):
        response, _ = request(port, "GET", path, headers={"X-Forwarded-Proto": "https"})
        [cookie] = [c for c in response.headers.get_all("Set-Cookie") if c.startswith(name)]
        assert cookie.endswith("; HttpOnly; SameSite=Lax; Secure")


@pytest.mark.integration
def test_theRpyCounterLeavesTheSessionServicesCookieAlone(stack):
    """
    One browser, both counters, visits interleaved: each counts on from its
    own session; neither cookie replaces the other.
    """
    client = Client(stack.services["front"].port)
    for visit in range(1, 5):
        assert client.get("/session/counter")[2] == b"Visit #%d for you!" % visit
        assert client.get("/rpy/counter.rpy")[2] == b"Visit #%d for you!" % visit
    names = sorted((cookie.name, cookie.path) for cookie in client.jar)
    assert names == [
        ("TWISTED_SESSION", "/session/"),
        ("TWISTED_SESSION_RPY", "/rpy/"),
        ("WEBSTACK_ROUTE", "/session/"),
    ]


def gauge(port: int, name: str) -> float:
    _, body = request(port, "GET", "/metrics")
    [value] = [float(line.split()[-1]) for line in body.decode().splitlines() if line.startswith(name + " ")]
    return value


@pytest.mark.integration
def test_aFullProcessRefusesTheSixthSessionAndKeepsTheFive():
    """
    C{max_sessions = 5} (and the .rpy site's 5): five clients hold a session
    each; a sixth is refused with 503 and a C{Retry-After} within the
    timeout, as is a flood of clients without cookies; the five go on
    counting; no gauge ever shows more than five sessions.
    """
    env = {"WEBSTACK_SESSION_MAX_SESSIONS": "5", "WEBSTACK_STATIC_RPY_MAX_SESSIONS": "5"}
    with LocalStack(ephemeral=True, backends=("session", "static"), env=env) as running:
        front = running.services["front"].port
        ports = {"/session/counter": running.services["session"].port, "/rpy/counter.rpy": running.services["static"].port}
        for path, port in ports.items():
            five = [Client(front) for _ in range(5)]
            for client in five:
                assert client.get(path)[2] == b"Visit #1 for you!"
                assert gauge(port, "sessions_active") <= 5
            status, headers, body = Client(front).get(path)
            assert status == 503
            assert 1 <= int(headers["Retry-After"]) <= 60
            assert not [c for c in headers.get_all("Set-Cookie") or () if c.startswith("TWISTED_SESSION")]
            for _ in range(50):
                connection = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
                connection.request("GET", path)
                assert connection.getresponse().status == 503
                connection.close()
            assert gauge(port, "sessions_active") == 5
            assert gauge(port, "sessions_refused_total") == 51
            for client in five:
                assert client.get(path)[2] == b"Visit #2 for you!"
        noFailureLogged(running)
