# -*- test-case-name: tests.test_auth -*-
"""
The auth service (C{twistd -n webstack-auth}): seed 004's
L{HTTPAuthSessionWrapper} with a L{Portal}, the per-user realm, and both
Basic and Digest, at C{/auth/}.

What changed from the seed, and why:
  - no password is stored: Basic is checked against bcrypt hashes, Digest
    against HA1 hashes (L{webstack.auth.passwords});
  - user paths are L{FilePath} children served by L{SafeFile} (the seed's
    own warning; L{webstack.auth.realm});
  - Digest works through the front and on several replicas
    (L{webstack.auth.digest});
  - repeated failures for a user name or a client address get 429 for a
    while (L{webstack.auth.throttle}), judged from each login's own outcome
    (L{webstack.auth.login});
  - bcrypt runs on a pool of its own with a bounded queue (503 beyond it,
    L{webstack.auth.checkpool}), and a Basic login that passed is
    remembered for C{cache_seconds} (L{webstack.auth.cache}).
"""

from __future__ import annotations

import os

from prometheus_client import Counter
from twisted.cred.portal import Portal
from twisted.logger import Logger
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.resource import Resource

from webstack.runtime.networks import TrustedProxies
from webstack.runtime.plugin import App, AppContext

from .cache import VerifiedCredentials
from .checkpool import CheckPoolCollector, ThreadPoolService, checkPool
from .digest import SharedDigestCredentialFactory
from .login import SCHEMES, Judge, ObservedLogin, schemeLabel
from .passwords import HtdigestChecker, HtpasswdChecker
from .realm import PublicHTMLRealm
from .settings import SECTION, Settings
from .throttle import FailureThrottle

__all__ = ["SECTION", "Settings", "makeApp"]

log = Logger(namespace="webstack.auth")


class ThrottledGuard(Resource):
    """
    The guard, behind a throttle: refuse (429) an address that failed too
    often; otherwise hand the request to Twisted's guard with an
    L{ObservedLogin} as its portal, which refuses a user name that failed
    too often and judges each check by its own outcome.
    """

    def __init__(self, portal: Portal, factories, judge: Judge, proxies: TrustedProxies) -> None:
        super().__init__()
        self._portal = portal
        self._factories = factories
        self._judge = judge
        self._proxies = proxies
        self._anonymous = HTTPAuthSessionWrapper(portal, factories)

    def getChildWithDefault(self, path, request):
        return self._guarded(request, lambda guard: guard.getChildWithDefault(path, request))

    def render(self, request):
        return self._guarded(request, lambda guard: guard.render(request))

    def _guarded(self, request, through):
        address = "address:" + self._proxies.clientHost(request)
        refusal = self._judge.lockedOut(address)
        if refusal is not None:
            return through(_Refusal(refusal))
        header = request.getHeader(b"authorization")
        if not header:
            return through(self._anonymous)
        login = ObservedLogin(self._portal, self._judge, request, address, schemeLabel(header))
        result = through(HTTPAuthSessionWrapper(login, self._factories))
        if not login.consulted:
            login.undecoded()
        return result


class _Refusal:
    """
    A refusal in the guard's place: the same answer for a path or the root.
    """

    def __init__(self, resource: Resource) -> None:
        self._resource = resource

    def getChildWithDefault(self, path, request):
        return self._resource

    def render(self, request):
        return self._resource.render(request)


def digestKey(settings: Settings, context: AppContext) -> bytes:
    if settings.digest_key:
        return settings.digest_key.encode("utf-8")
    path = context.configPath(settings.digest_key_file)
    if path.isfile():
        return path.getContent().strip()
    log.warn(
        "auth: no digest_key or {path}: using a key of this process only, so a"
        " Digest challenge from one replica fails on another",
        path=path.path,
    )
    return os.urandom(32)


def authMetrics(registry) -> dict[str, Counter]:
    """
    The service's own counters, in C{registry}; every label value is one of
    a fixed few (the scheme is L{schemeLabel}'s), so clients cannot add
    series.
    """
    metrics = {
        "attempts": Counter(
            "auth_attempts_total",
            "Requests with credentials, by scheme (basic, digest, other) and outcome.",
            ["scheme", "outcome"],
            registry=registry,
        ),
        "throttled": Counter(
            "auth_throttled_total", "Requests refused with 429.", registry=registry
        ),
        "lockouts": Counter(
            "auth_lockouts_total",
            "User names or addresses locked out after repeated failures.",
            registry=registry,
        ),
        "logouts": Counter(
            "auth_logouts_total", "Logouts (the realm's logout callback).", registry=registry
        ),
        "busy": Counter(
            "auth_checks_busy_total",
            "Password checks refused with 503: every check thread busy and the queue full.",
            registry=registry,
        ),
        "cacheHits": Counter(
            "auth_cache_hits_total",
            "Basic logins that passed without a bcrypt check (a recent check remembered).",
            registry=registry,
        ),
    }
    for scheme in SCHEMES:
        for outcome in ("ok", "failed"):
            metrics["attempts"].labels(scheme, outcome)
    return metrics


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    registry = context.registry
    metrics = authMetrics(registry)
    reactor = context.reactor
    checks, pool = checkPool(reactor, settings.check_threads, settings.check_queue)
    registry.register(CheckPoolCollector(checks))
    cache = VerifiedCredentials(
        reactor, settings.cache_seconds, settings.cache_entries, onHit=metrics["cacheHits"].inc
    )
    portal = Portal(
        PublicHTMLRealm(context.configPath(settings.homes), metrics["logouts"].inc),
        [
            HtpasswdChecker(context.configPath(settings.htpasswd).path, checks, cache),
            HtdigestChecker(context.configPath(settings.htdigest).path, settings.realm),
        ],
    )
    proxies = settings.trustedProxies()
    realm = settings.realm.encode("utf-8")
    factories = [
        BasicCredentialFactory(realm),
        SharedDigestCredentialFactory(realm, digestKey(settings, context), proxies),
    ]
    throttle = FailureThrottle(
        reactor, settings.max_failures, settings.failure_window, settings.lockout_seconds
    )
    root = Resource()
    root.putChild(
        b"auth", ThrottledGuard(portal, factories, Judge(throttle, metrics, log), proxies)
    )
    return App(resource=root, routes=["/auth/"], children=[ThreadPoolService(pool)])
