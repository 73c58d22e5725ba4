"""
The runtime's shared helpers, in memory: comma-separated settings, trusted
proxies, the settings every service has, the operators' endpoints the
runtime mounts in each service, and the hooks it calls when its drain
begins.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from webstack.auth import app as authApp
from webstack.runtime.config import ConfigError, commaList, parsedList
from webstack.runtime.networks import TrustedProxies
from webstack.runtime.ops import mountOps
from webstack.runtime.plugin import App, buildService, loadServiceSettings
from webstack.runtime.settings import (
    RUNTIME_KEYS,
    RuntimeSettings,
    ownSettings,
    runtimeSettings,
)
from webstack.session import app as sessionApp
from webstack.static import app as staticApp

from .support import dummyRequest

# Comma-separated settings.


@pytest.mark.parametrize(
    "text, items",
    [
        ("", ()),
        (" , ,", ()),
        ("PATH", ("PATH",)),
        ("PATH, LANG ,TZ,", ("PATH", "LANG", "TZ")),
    ],
)
def test_aCommaListIsItsStrippedNonEmptyItems(text, items):
    assert commaList(text) == items


def test_aParsedListParsesEachItem():
    assert parsedList("1, 2,3", "x.numbers", int, "a number") == (1, 2, 3)


def test_aParsedListNamesTheKeyTheValueAndTheBadItem():
    with pytest.raises(ConfigError) as raised:
        parsedList("1, two, 3", "x.numbers", int, "a whole number")
    assert str(raised.value) == "x.numbers = '1, two, 3' is invalid: 'two' is not a whole number"


# Trusted proxies.


def request(peer, **headers):
    """
    A request double from C{peer}: a host, or an address object.
    """
    if isinstance(peer, str):
        return dummyRequest(DummyRequest, peer, **headers)
    made = dummyRequest(DummyRequest, "127.0.0.1", **headers)
    made.client = peer
    return made


def test_trustedProxiesComeFromACommaList():
    proxies = TrustedProxies.fromSetting("127.0.0.1/32, 10.1.2.3/8,::1", "x.trusted_proxies")
    assert [str(n) for n in proxies.networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert TrustedProxies.fromSetting("", "x.trusted_proxies").networks == ()


@pytest.mark.parametrize("bad", ["nowhere", "10.0.0.0/33", "127.0.0.1/32;::1", "1.2.3"])
def test_aBadTrustedProxyIsAConfigErrorNamingTheKey(bad):
    text = f"127.0.0.1/32, {bad}"
    with pytest.raises(ConfigError) as raised:
        TrustedProxies.fromSetting(text, "x.trusted_proxies")
    assert str(raised.value) == (
        f"x.trusted_proxies = {text!r} is invalid: {bad!r} is not an address or network"
    )


@pytest.mark.parametrize(
    "module, key",
    [
        (authApp, "auth.trusted_proxies"),
        (sessionApp, "session.trusted_proxies"),
        (staticApp, "static.rpy_trusted_proxies"),
    ],
)
def test_everyServiceRefusesABadTrustedProxyAtStartUp(module, key):
    section, name = key.split(".")
    document = {section: {name: "127.0.0.1, the-front"}}
    with pytest.raises(ConfigError, match=rf"^{key} = .* 'the-front' is not an address or network$"):
        loadServiceSettings(module, document, {}, "stack.toml")


@pytest.mark.parametrize(
    "peer, trusted",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("10.9.8.7", True),
        (IPv6Address("TCP", "::1", 4444), True),
        (IPv6Address("TCP", "::2", 4444), False),
        (UNIXAddress(b"/run/front.sock"), False),
    ],
)
def test_onlyAPeerInATrustedNetworkIsTrusted(peer, trusted):
    proxies = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8", "::1/128"])
    assert proxies.trusts(request(peer)) is trusted


def test_theClientIsTheLastForwardedAddressOnlyFromATrustedProxy():
    proxies = TrustedProxies(["127.0.0.0/8"])
    forwarded = {"x_forwarded_for": b"6.6.6.6, 198.51.100.7"}
    assert proxies.clientHost(request("127.0.0.1", **forwarded)) == "198.51.100.7"
    assert proxies.clientHost(request("127.0.0.1")) == "127.0.0.1"
    assert proxies.clientHost(request("192.0.2.1", **forwarded)) == "192.0.2.1"


def test_httpsIsBelievedOnlyFromATrustedProxy():
    proxies = TrustedProxies(["127.0.0.0/8"])
    assert proxies.forwardedHTTPS(request("127.0.0.1", x_forwarded_proto=b" HTTPS "))
    assert not proxies.forwardedHTTPS(request("127.0.0.1", x_forwarded_proto=b"http"))
    assert not proxies.forwardedHTTPS(request("127.0.0.1"))
    assert not proxies.forwardedHTTPS(request("192.0.2.1", x_forwarded_proto=b"https"))


# The settings every service has, and a service's own.


def test_theRuntimeKeysAreRuntimeSettingsFields():
    assert RUNTIME_KEYS == set(RuntimeSettings.__dataclass_fields__)
    assert {"listen", "drain_timeout", "workers"} <= RUNTIME_KEYS


def test_aServiceTableHoldsBothKindsAndNothingElse():
    document = {
        "runtime": {"backlog": 100},
        "auth": {"backlog": 200, "realm": "here", "listen": "tcp:1"},
    }
    runtime = runtimeSettings(
        document, "auth", {}, "stack.toml", otherKeys=authApp.Settings.__dataclass_fields__
    )
    assert (runtime.backlog, runtime.listen) == (200, "tcp:1")
    own = ownSettings(authApp.Settings, document, "auth", {"WEBSTACK_AUTH_REALM": "env"}, "s")
    assert own.realm == "env"
    document["auth"]["relm"] = "typo"
    with pytest.raises(ConfigError, match="stack.toml: unknown setting auth.relm"):
        runtimeSettings(
            document, "auth", {}, "stack.toml", otherKeys=authApp.Settings.__dataclass_fields__
        )
    with pytest.raises(ConfigError, match="stack.toml: unknown setting auth.relm"):
        ownSettings(authApp.Settings, document, "auth", {}, "stack.toml")


def test_subtablesAreLeftToTheirReaders():
    document = {"x": {"routes": {"a": {}}, "drain_timeout": 1}}
    settings = ownSettings(sessionApp.Settings, document, "x", {}, "s", subtables=("routes",))
    assert settings == sessionApp.Settings()
    with pytest.raises(ConfigError, match="unknown setting x.routes"):
        ownSettings(sessionApp.Settings, document, "x", {}, "s")


# The operators' endpoints, mounted by the runtime.


class Held(Resource):
    """
    A page that answers only when the test finishes its requests.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []

    def render_GET(self, request):
        self.requests.append(request)
        return NOT_DONE_YET


def service(clock, opsPath="/", **app):
    """
    A service built by the runtime from an app that mounts nothing of its
    own but C{/demo/} (a L{Held} page); not listening.
    """
    held = Held()

    def makeApp(context):
        root = Resource()
        if opsPath != "/":
            root.putChild(opsPath.strip("/").encode(), Resource())
        root.putChild(b"demo", held)
        return App(resource=root, routes=["/demo/"], opsPath=opsPath, **app)

    module = SimpleNamespace(SECTION="probe", Settings=None, makeApp=makeApp)
    built = buildService(module, RuntimeSettings(drain_timeout=10.0), None, clock, endpoint=object())
    built.held = held
    return built


def connect(site):
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    return channel, transport


def get(site, path):
    channel, transport = connect(site)
    channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    channel.connectionLost(Failure(ConnectionDone()))
    return transport.value()


def routeCounts(webService):
    """
    The requests the service counted, by route label.
    """
    counts = {}
    for family in webService.site.metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["route"]] = counts.get(sample.labels["route"], 0) + sample.value
    return counts


@pytest.mark.parametrize("opsPath", ["/", "/-/"])
def test_theRuntimeMountsTheOpsEndpointsAndLabelsThem(opsPath):
    built = service(Clock(), opsPath)
    site = built.site
    assert get(site, f"{opsPath}healthz".encode()).startswith(b"HTTP/1.1 200")
    assert get(site, f"{opsPath}readyz".encode()).startswith(b"HTTP/1.1 200")
    metrics = get(site, f"{opsPath}metrics".encode())
    assert metrics.startswith(b"HTTP/1.1 200")
    assert b"http_requests_total" in metrics
    built.health.draining = True
    assert get(site, f"{opsPath}readyz".encode()).startswith(b"HTTP/1.1 503")
    assert routeCounts(built) == {
        f"{opsPath}healthz": 1,
        f"{opsPath}readyz": 2,
        f"{opsPath}metrics": 1,
    }


def test_theOpsPathIsMadeWhereTheTreeHasNone():
    root = Resource()
    assert mountOps(root, "/a/b/", {b"healthz": Resource()}) == ["/a/b/healthz"]
    assert root.getStaticEntity(b"a").getStaticEntity(b"b").getStaticEntity(b"healthz")


@pytest.mark.parametrize("path", ["", "-", "/-", "-/"])
def test_anOpsPathMustStartAndEndWithASlash(path):
    with pytest.raises(ValueError, match="must start and end with /"):
        mountOps(Resource(), path, {})


# The hooks called when the drain begins.


def test_drainHooksAreCalledWhenTheDrainBeginsBeforeItEnds():
    clock = Clock()
    seen = []
    built = None

    def hook(name):
        return lambda: seen.append((name, clock.seconds(), built.health.draining, len(built.site.channels)))

    built = service(clock, drainHooks=[hook("first"), hook("second")], stopHooks=[lambda: seen.append("stopped")])
    channel, transport = connect(built.site)
    channel.dataReceived(b"GET /demo/ HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(2)
    stopped = []
    built.stopService().addCallback(stopped.append)
    assert seen == [("first", 2, True, 1), ("second", 2, True, 1)]
    clock.advance(5)
    assert stopped == []
    [held] = built.held.requests
    held.finish()
    channel.connectionLost(Failure(ConnectionDone()))
    assert stopped == [None]
    assert seen[2:] == ["stopped"]
    assert transport.value().startswith(b"HTTP/1.1 200")


def test_aFailingDrainHookIsLoggedAndHoldsNothingUp():
    clock = Clock()
    seen = []
    events = []

    def broken():
        raise RuntimeError("broken hook")

    built = service(clock, drainHooks=[broken, lambda: seen.append("after")])
    built.log = type(built.log)(observer=events.append)
    stopped = []
    built.stopService().addCallback(stopped.append)
    assert stopped == [None]
    assert seen == ["after"]
    [failed] = [e for e in events if e.get("event") == "drain_hook_failed"]
    assert failed["log_failure"].check(RuntimeError)
