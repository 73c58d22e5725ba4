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

from twisted.web import script
from twisted.web.resource import Resource

from webstack.runtime.files import RangePolicy, SafeFile
from webstack.runtime.plugin import App, AppContext
from webstack.runtime.sessions import SiteSessions

from .settings import SECTION, Settings

__all__ = ["SECTION", "Settings", "makeApp"]

RPY_COOKIE_NAME = b"TWISTED_SESSION_RPY"
"""
The .rpy scripts' session cookie: not Twisted's C{TWISTED_SESSION}, which
is the session service's, behind the same front.
"""


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
            trustedProxies=settings.rpyTrustedProxies(),
        ).install
    return App(resource=tree, routes=routes, configureSite=configureSite)
