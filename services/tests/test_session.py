"""
The session service: in memory on a L{Clock} (expiry, sliding on every
visit, cookie flags, the counter, the expiry log, no caching, the bound on
sessions held), and over loopback with two replicas behind the front (each
session stays on the replica that holds it).  The session service beside the
static service's .rpy sessions, through one front: test_rpy_session.
"""

import http.client
import json

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from webstack.localstack import LocalStack
from webstack.runtime.config import ConfigError
from webstack.runtime.health import Health
from webstack.runtime.metrics import HTTPMetrics
from webstack.runtime.plugin import AppContext, loadServiceSettings
from webstack.runtime.settings import RuntimeSettings
from webstack.runtime.site import RouteLabeler, WebSite
from webstack.session import app
from webstack.session.app import Settings, makeApp

from .support import request as httpRequest


class Browser:
    """
    One client with a cookie jar, talking to a site in memory.
    """

    def __init__(self, site, peer="127.0.0.1", cookieName=b"TWISTED_SESSION"):
        self.site = site
        self.peer = peer
        self.cookieName = cookieName
        self.cookie = None

    def get(self, path, headers=b""):
        channel = self.site.buildProtocol(IPv4Address("TCP", self.peer, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", self.peer, 40000))
        channel.makeConnection(transport)
        cookie = b"Cookie: %s=%s\r\n" % (self.cookieName, self.cookie) if self.cookie else b""
        channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + cookie + headers + b"\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        setCookie = [l for l in head.split(b"\r\n") if l.lower().startswith(b"set-cookie:")]
        if setCookie:
            self.cookie = setCookie[0].split(b"=", 1)[1].split(b";")[0]
        channel.connectionLost(None)
        return head, body.split(b"\r\n")[1] if b"chunked" in head.lower() else body


def header(head, name):
    """
    The values of header C{name} in a response head.
    """
    prefix = name.lower() + b":"
    return [l[len(prefix):].strip() for l in head.split(b"\r\n") if l.lower().startswith(prefix)]


def makeWorld(**settings):
    clock = Clock()
    registry = CollectorRegistry()
    context = AppContext(
        reactor=clock,
        runtime=RuntimeSettings(),
        settings=Settings(**{"timeout": 60.0, **settings}),
        registry=registry,
        health=Health(),
    )
    app = makeApp(context)
    site = WebSite(app.resource, reactor=clock, metrics=HTTPMetrics(registry), routeLabeler=RouteLabeler(app.routes))
    app.configureSite(site)
    return site, clock, registry


@pytest.fixture
def world():
    return makeWorld()


def test_theCounterCountsPerSession(world):
    site, clock, registry = world
    alice, bob = Browser(site), Browser(site)
    assert alice.get(b"/session/counter")[1] == b"Visit #1 for you!"
    assert alice.get(b"/session/counter")[1] == b"Visit #2 for you!"
    assert bob.get(b"/session/counter")[1] == b"Visit #1 for you!"
    assert alice.get(b"/session/counter")[1] == b"Visit #3 for you!"


def test_theSessionCookieCarriesHttpOnlyAndSameSite(world):
    head, _ = Browser(world[0]).get(b"/session/")
    [cookie] = [l for l in head.split(b"\r\n") if l.startswith(b"Set-Cookie")]
    assert cookie.startswith(b"Set-Cookie: TWISTED_SESSION=")
    assert cookie.endswith(b"; Path=/session/; HttpOnly; SameSite=Lax")


def test_secureWhenATrustedProxySaysHTTPS(world):
    head, _ = Browser(world[0]).get(b"/session/", b"X-Forwarded-Proto: https\r\n")
    assert b"SameSite=Lax; Secure" in head
    head, _ = Browser(world[0], peer="198.51.100.9").get(b"/session/", b"X-Forwarded-Proto: https\r\n")
    assert b"Secure" not in head


def test_aSessionExpiresAfterTheTimeoutWithoutAVisit(world):
    site, clock, registry = world
    browser = Browser(site)
    browser.get(b"/session/counter")
    clock.advance(59)
    assert browser.get(b"/session/counter")[1] == b"Visit #2 for you!"
    clock.advance(60)
    assert browser.get(b"/session/counter")[1] == b"Visit #1 for you!"
    assert registry.get_sample_value("sessions_expired_total") == 1
    assert registry.get_sample_value("sessions_created_total") == 2


def test_everyVisitKeepsTheSessionAlive(world):
    """
    "Keep visiting it to keep your session active": ten visits 50 s apart,
    each within the 60-s timeout of the last, keep one session for 500 s.
    """
    site, clock, registry = world
    browser = Browser(site)
    browser.get(b"/session/counter")
    for visit in range(2, 12):
        clock.advance(50)
        assert browser.get(b"/session/counter")[1] == b"Visit #%d for you!" % visit
    assert registry.get_sample_value("sessions_expired_total") == 0
    assert registry.get_sample_value("sessions_active") == 1


def test_expireEndsTheSessionNow(world):
    site, clock, registry = world
    browser = Browser(site)
    browser.get(b"/session/counter")
    assert browser.get(b"/session/expire")[1] == b"Your session has been expired."
    assert site.sessions == {}
    # The browser still sends the old cookie; it names no session now.
    assert browser.get(b"/session/counter")[1] == b"Visit #1 for you!"


def test_theExpiryIsLogged(world):
    site, clock, registry = world
    browser = Browser(site)
    _, body = browser.get(b"/session/logme")
    assert body.endswith(b"expires 60 s after your last visit.")
    with capturedLogs() as events:
        clock.advance(60)
    [event] = [e for e in events if e.get("event") == "session_expired"]
    assert event["uid"] == browser.cookie.decode()
    assert clock.getDelayedCalls() == []


SEEDS = [b"/session/", b"/session/counter", b"/session/logme", b"/session/expire"]


@pytest.mark.parametrize("path", SEEDS)
def test_everyResponseOfASessionIsPrivateAndNotStored(world, path):
    """
    A response bound to one client's session must not be kept by a shared
    cache: on the visit that makes the session and on the ones that find
    it by its cookie.
    """
    browser = Browser(world[0])
    first, _ = browser.get(path)
    assert header(first, b"set-cookie")
    assert header(first, b"cache-control") == [b"private, no-store"]
    browser.get(b"/session/counter")
    again, _ = browser.get(path)
    assert header(again, b"set-cookie") == []
    assert header(again, b"cache-control") == [b"private, no-store"]


def test_aFullServiceRefusesANewSessionAndKeepsTheOnesItHas():
    """
    With C{max_sessions = 5}, five clients hold a session each; a sixth is
    refused with 503 and a C{Retry-After} of the time until the least
    recently visited session expires; the five go on counting; once that
    session has expired, the sixth gets one.  Nothing is logged as a failure.
    """
    site, clock, registry = makeWorld(max_sessions=5)
    five = [Browser(site) for _ in range(5)]
    for browser in five:
        assert browser.get(b"/session/counter")[1] == b"Visit #1 for you!"
        clock.advance(10)
    # t=50; visits at 0, 10, 20, 30, 40.  The first comes back at 50: the
    # least recently visited is now the second, expiring at 10 + 60 = 70.
    assert five[0].get(b"/session/counter")[1] == b"Visit #2 for you!"
    clock.advance(5)
    sixth = Browser(site)
    with capturedLogs() as events:
        head, body = sixth.get(b"/session/counter")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert header(head, b"retry-after") == [b"15"]
    assert header(head, b"set-cookie") == []
    assert b"as many sessions as it may" in body
    assert not [e for e in events if "log_failure" in e]
    assert registry.get_sample_value("sessions_refused_total") == 1
    assert registry.get_sample_value("sessions_active") == 5
    for visit, browser in enumerate(five):
        assert browser.get(b"/session/counter")[1] == (b"Visit #3 for you!" if visit == 0 else b"Visit #2 for you!")
    # Those visits refreshed every session: the next to expire is again the
    # first, visited at 55, so at 115.
    head, _ = Browser(site).get(b"/session/counter")
    assert header(head, b"retry-after") == [b"60"]
    clock.advance(60)
    assert sixth.get(b"/session/counter")[1] == b"Visit #1 for you!"
    assert registry.get_sample_value("sessions_active") == 1


def test_aClientThatDropsItsCookiesCannotGrowTheStore():
    """
    A client that never sends its cookie back asks for a new session on
    every request: beyond the bound each one is refused, and the number of
    sessions held never exceeds it.
    """
    site, clock, registry = makeWorld(max_sessions=5)
    statuses = []
    for _ in range(100):
        head, _ = Browser(site).get(b"/session/")
        statuses.append(int(head.split(b" ")[1]))
        assert registry.get_sample_value("sessions_active") <= 5
        clock.advance(0.1)
    assert statuses == [200] * 5 + [503] * 95
    assert registry.get_sample_value("sessions_created_total") == 5
    assert registry.get_sample_value("sessions_refused_total") == 95
    assert len(site.sessions) == 5


def test_theRefusalIsJSONForAClientThatAsks():
    site, clock, registry = makeWorld(max_sessions=1)
    Browser(site).get(b"/session/")
    head, body = Browser(site).get(b"/session/", b"Accept: application/json\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert json.loads(body)["retry_after"] == 60


def test_badSessionSettingsAreRefusedByName():
    with pytest.raises(ConfigError, match=r"session\.trusted_proxies .*'10\.0\.0\.0/33'"):
        Settings(trusted_proxies="127.0.0.1/32, 10.0.0.0/33")
    document = {"session": {"max_sessions": 0}}
    with pytest.raises(ConfigError, match="max_sessions"):
        loadServiceSettings(app, document, {}, "stack.toml")


@pytest.mark.integration
def test_withTwoReplicasEachSessionStaysOnItsReplica():
    """
    Sessions live in one process's memory: the front keeps a client on the
    replica that made its session (through the front's own routing cookie),
    so the count goes on.
    """
    # One front worker: the even spread of new sessions asserted below is one
    # balancer's; stickiness across workers is test_front_workers' business.
    oneWorker = {"WEBSTACK_FRONT_WORKERS": "1"}
    with LocalStack(
        ephemeral=True, backends=("session",), replicas={"session": 2}, env=oneWorker
    ) as stack:
        port = stack.services["front"].port
        for client in range(4):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            # Like a browser: every cookie set, the service's and the front's.
            jar: dict[str, str] = {}
            for visit in range(1, 6):
                cookie = "; ".join(f"{name}={value}" for name, value in jar.items())
                connection.request("GET", "/session/counter", headers={"Cookie": cookie} if cookie else {})
                response = connection.getresponse()
                assert response.read() == b"Visit #%d for you!" % visit
                for setCookie in response.headers.get_all("Set-Cookie") or ():
                    name, _, value = setCookie.split(";")[0].partition("=")
                    jar[name.strip()] = value.strip()
            connection.close()
        # The four new sessions were spread over both replicas (and each
        # client's later visits followed its session).
        active = [
            float(line.split()[-1])
            for name in ("session", "session-2")
            for line in httpRequest(stack.services[name].port, "GET", "/metrics")[1].decode().splitlines()
            if line.startswith("sessions_active ")
        ]
        assert active == [2.0, 2.0]
