# -*- test-case-name: webstack.tests.test_auth -*-
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
    while (L{webstack.auth.throttle}).
"""

from __future__ import annotations

import base64
import math
import os
import re
from dataclasses import dataclass

from prometheus_client import Counter
from twisted.cred.portal import Portal
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.resource import Resource

from webstack.runtime.config import setting
from webstack.runtime.errors import errorBody
from webstack.runtime.plugin import App, AppContext

from .digest import SharedDigestCredentialFactory, TrustedProxies
from .passwords import HtdigestChecker, HtpasswdChecker
from .realm import PublicHTMLRealm
from .throttle import FailureThrottle

SECTION = "auth"
log = Logger(namespace="webstack.auth")


@dataclass(frozen=True)
class Settings:
    realm: str = setting("webstack", help="the HTTP authentication realm")
    homes: str = setting("auth/home", help="<user>/public_html lives here")
    htpasswd: str = setting("auth/htpasswd", help="bcrypt hashes, for Basic")
    htdigest: str = setting("auth/htdigest", help="HA1 hashes, for Digest")
    digest_key: str = setting("", help="key signing Digest challenges (all replicas)")
    digest_key_file: str = setting("auth/digest.key", help="... or a file holding it")
    trusted_proxies: str = setting(
        "127.0.0.1/32,::1/128", help="peers whose X-Forwarded-For is believed"
    )
    max_failures: int = setting(5, minimum=1, maximum=1000)
    failure_window: float = setting(60.0, minimum=1, maximum=86400)
    lockout_seconds: float = setting(30.0, minimum=1, maximum=86400)


def claimedUser(request) -> tuple[str, str] | None:
    """
    The scheme and user name an C{Authorization} header claims, unchecked.
    """
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, rest = header.partition(b" ")
    scheme = scheme.lower()
    user = b""
    if scheme == b"basic":
        try:
            user = base64.b64decode(rest.strip(), validate=True).split(b":", 1)[0]
        except ValueError:
            pass
    elif scheme == b"digest":
        match = re.search(rb'username="([^"]*)"', rest)
        user = match.group(1) if match else b""
    return scheme.decode("ascii", "replace"), user.decode("utf-8", "replace")[:128]


class ThrottledGuard(Resource):
    """
    The guard, behind a throttle: refuse (429) a user name or address that
    failed too often, and count each attempt's outcome when its response is
    finished.
    """

    def __init__(self, wrapper, throttle: FailureThrottle, proxies: TrustedProxies, metrics) -> None:
        super().__init__()
        self._wrapper = wrapper
        self._throttle = throttle
        self._proxies = proxies
        self._metrics = metrics

    def getChildWithDefault(self, path, request):
        refusal = self._screen(request)
        if refusal is not None:
            return refusal
        return self._wrapper.getChildWithDefault(path, request)

    def render(self, request):
        refusal = self._screen(request)
        if refusal is not None:
            return refusal.render(request)
        return self._wrapper.render(request)

    def _screen(self, request):
        claim = claimedUser(request)
        address = "address:" + self._proxies.clientHost(request)
        keys = [address] + ([f"user:{claim[1]}"] if claim and claim[1] else [])
        wait = self._throttle.retryAfter(*keys)
        if wait:
            self._metrics["throttled"].inc()
            return _TooManyAttempts(math.ceil(wait))
        if claim is not None:
            request.notifyFinish().addBoth(self._judge, request, claim[0], keys)
        return None

    def _judge(self, result, request, scheme, keys):
        if request.code == 401:
            self._metrics["attempts"].labels(scheme, "failed").inc()
            for key in keys:
                if self._throttle.failed(key):
                    self._metrics["lockouts"].inc()
                    log.warn("auth: {key} locked out after repeated failures", event="lockout", key=key)
        else:
            self._metrics["attempts"].labels(scheme, "ok").inc()
            for key in keys:
                self._throttle.succeeded(key)


class _TooManyAttempts(Resource):
    isLeaf = True

    def __init__(self, seconds: int) -> None:
        super().__init__()
        self._seconds = seconds

    def render(self, request):
        request.setHeader(b"retry-after", b"%d" % (self._seconds,))
        return errorBody(
            request,
            429,
            f"Too many failed logins; try again in {self._seconds} s.",
            retry_after=self._seconds,
        )


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


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    registry = context.registry
    metrics = {
        "attempts": Counter(
            "auth_attempts_total",
            "Requests with credentials, by scheme and outcome.",
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
    }
    reactor = context.reactor
    pool = reactor.getThreadPool()

    def inThread(f, *args):
        return deferToThreadPool(reactor, pool, f, *args)

    portal = Portal(
        PublicHTMLRealm(context.configPath(settings.homes), metrics["logouts"].inc),
        [
            HtpasswdChecker(context.configPath(settings.htpasswd).path, inThread),
            HtdigestChecker(context.configPath(settings.htdigest).path, settings.realm),
        ],
    )
    proxies = TrustedProxies(
        filter(None, (n.strip() for n in settings.trusted_proxies.split(",")))
    )
    realm = settings.realm.encode("utf-8")
    wrapper = HTTPAuthSessionWrapper(
        portal,
        [
            BasicCredentialFactory(realm),
            SharedDigestCredentialFactory(realm, digestKey(settings, context), proxies),
        ],
    )
    throttle = FailureThrottle(
        reactor, settings.max_failures, settings.failure_window, settings.lockout_seconds
    )
    root = Resource()
    root.putChild(b"auth", ThrottledGuard(wrapper, throttle, proxies, metrics))
    context.mountOps(root)
    return App(resource=root, routes=["/auth/", "/healthz", "/readyz", "/metrics"])
