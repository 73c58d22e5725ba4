# -*- test-case-name: tests.test_static -*-
"""
The static service (C{twistd -n webstack-static}): the site in
C{config/static/} at C{/static/}, and, at C{/rpy/}, the seeds' own way of
running their examples, C{.rpy} scripts, for learning.

Stock C{twistd web --path DIR} serves a directory with the C{.rpy}, C{.epy}
and C{.cgi} processors on, so any script dropped into it runs.  Here the
site is plain files only (L{SafeFile}); scripts run only under C{/rpy/},
from their own directory, which the landing page marks as a place to learn
from, not a way to deploy.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web import script
from twisted.web.resource import Resource

from webstack.runtime.config import setting
from webstack.runtime.files import DEFAULT_MAX_RANGES, RangePolicy, SafeFile
from webstack.runtime.plugin import App, AppContext
from webstack.runtime.sessions import SiteSessions, trustedNetworks

SECTION = "static"
RPY_COOKIE_NAME = b"TWISTED_SESSION_RPY"
"""
The .rpy scripts' session cookie: not Twisted's C{TWISTED_SESSION}, which
is the session service's, behind the same front.
"""


@dataclass(frozen=True)
class Settings:
    root: str = setting("static", help="the site, relative to stack.toml's directory")
    listing: bool = setting(False, help="list directories that have no index.html")
    cache_control: str = setting(
        "public, max-age=300", help="Cache-Control of every file ('' for none)"
    )
    rpy_root: str = setting("rpy", help="the .rpy scripts served at /rpy/ ('' for none)")
    max_ranges: int = setting(
        DEFAULT_MAX_RANGES, minimum=0, maximum=1000,
        help="byte ranges a request may ask for (more: the whole file; 0: ranges off)",
    )
    rpy_session_timeout: float = setting(
        60.0, minimum=1, maximum=86400, help="an .rpy session expires this long after its last visit (s)"
    )
    rpy_max_sessions: int = setting(
        1000,
        minimum=1,
        maximum=10_000_000,
        help=".rpy sessions held at once; when full, a new one is refused (503, Retry-After)",
    )
    rpy_trusted_proxies: str = setting(
        "127.0.0.1/32,::1/128", help="peers whose X-Forwarded-Proto is believed (.rpy cookies)"
    )

    def __post_init__(self) -> None:
        trustedNetworks(self.rpy_trusted_proxies, f"{SECTION}.rpy_trusted_proxies")


def makeApp(context: AppContext) -> App:
    settings: Settings = context.settings
    root = context.configPath(settings.root)
    site = SafeFile(
        root.path,
        listing=settings.listing,
        cacheControl=settings.cache_control.encode("ascii"),
        ranges=RangePolicy(settings.max_ranges, context.registry),
    )
    tree = Resource()
    tree.putChild(b"static", site)
    routes = ["/static/"]
    configureSite = None
    if settings.rpy_root:
        # Learning only: .rpy files are Python run by the server.  Each is
        # re-executed on every request unless it calls cache() (see the
        # scripts' comments); a real module, as in the other services, is
        # loaded once and can be tested.
        scripts = SafeFile(context.configPath(settings.rpy_root).path, listing=True)
        scripts.processors = {".rpy": script.ResourceScript}
        tree.putChild(b"rpy", scripts)
        routes.append("/rpy/")
        # The scripts' sessions (counter.rpy's) are bounded, short, and
        # have a cookie of their own scoped to /rpy/, like the session
        # service's: Twisted's defaults would keep any number for 900 s
        # each under the session service's cookie name.
        configureSite = SiteSessions(
            registry=context.registry,
            cookieName=RPY_COOKIE_NAME,
            cookiePath=b"/rpy/",
            timeout=settings.rpy_session_timeout,
            maxSessions=settings.rpy_max_sessions,
            trustedProxies=trustedNetworks(
                settings.rpy_trusted_proxies, f"{SECTION}.rpy_trusted_proxies"
            ),
        ).install
    context.mountOps(tree)
    return App(
        resource=tree,
        routes=[*routes, "/healthz", "/readyz", "/metrics"],
        configureSite=configureSite,
    )
