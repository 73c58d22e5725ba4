"""
The session service: in memory on a L{Clock} (expiry, sliding on every
visit, cookie flags, the counter, the expiry log), and over loopback with two
replicas behind the front (each session stays on the replica that holds it).
"""

import http.client

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from webstack.localstack import LocalStack
from webstack.runtime.health import Health
from webstack.runtime.metrics import HTTPMetrics
from webstack.runtime.plugin import AppContext
from webstack.runtime.service import RuntimeSettings
from webstack.runtime.site import RouteLabeler, WebSite
from webstack.sessions.app import Settings, makeApp

from .support import request as httpRequest


class Browser:
    """
    One client with a cookie jar, talking to a site in memory.
    """

    def __init__(self, site, peer="127.0.0.1"):
        self.site = site
        self.peer = peer
        self.cookie = None

    def get(self, path, headers=b""):
        channel = self.site.buildProtocol(IPv4Address("TCP", self.peer, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", self.peer, 40000))
        channel.makeConnection(transport)
        cookie = b"Cookie: TWISTED_SESSION=%s\r\n" % self.cookie if self.cookie else b""
        channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + cookie + headers + b"\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        setCookie = [l for l in head.split(b"\r\n") if l.lower().startswith(b"set-cookie:")]
        if setCookie:
            self.cookie = setCookie[0].split(b"=", 1)[1].split(b";")[0]
        channel.connectionLost(None)
        return head, body.split(b"\r\n")[1] if b"chunked" in head.lower() else body


@pytest.fixture
def world():
    clock = Clock()
    registry = CollectorRegistry()
    context = AppContext(
        name="session",
        reactor=clock,
        runtime=RuntimeSettings(),
        settings=Settings(timeout=60.0),
        registry=registry,
        health=Health(),
    )
    app = makeApp(context)
    site = WebSite(app.resource, reactor=clock, metrics=HTTPMetrics(registry), routeLabeler=RouteLabeler(app.routes))
    app.configureSite(site)
    return site, clock, registry


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
    assert b"; Path=/; HttpOnly; SameSite=Lax" in cookie
    assert b"Secure" not in cookie


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
