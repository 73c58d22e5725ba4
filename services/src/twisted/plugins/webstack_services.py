"""
twistd plugins for the webstack services: C{twistd -n webstack-<name>}.

This file lives in C{twisted/plugins/} so that twistd finds it; it names each
service's module without importing it.
"""

from webstack.runtime.plugin import WebServiceMaker

front = WebServiceMaker(
    "webstack-front",
    "webstack.front.app",
    "The front: a streaming reverse proxy that routes to every demo service.",
)
delayed = WebServiceMaker(
    "webstack-async",
    "webstack.delayed.app",
    "Asynchronous, Deferred-based, interrupted and logged delayed responses"
    " (Twisted Web in 60 seconds, seeds 000-003).",
)
static = WebServiceMaker(
    "webstack-static",
    "webstack.static.app",
    "Static files (plain files only, nothing outside the root) and, for"
    " learning, the seeds' .rpy scripts.",
)
wsgi = WebServiceMaker(
    "webstack-wsgi",
    "webstack.wsgi.app",
    "WSGI applications on a thread pool of their own (seed 004).",
)
cgi = WebServiceMaker(
    "webstack-cgi",
    "webstack.cgi.app",
    "CGI scripts (CGIScript, FilteredScript; seed 004), guarded: no secrets in"
    " their environment, stopped when the client leaves or time is up.",
)
auth = WebServiceMaker(
    "webstack-auth",
    "webstack.auth.app",
    "HTTP Basic and Digest authentication with a per-user realm (seed 004),"
    " hashed passwords, throttled failures.",
)
session = WebServiceMaker(
    "webstack-session",
    "webstack.sessions.app",
    "Sessions: basics, objects stored by adaptation, endings (seed 004), with"
    " sliding expiry and HttpOnly/SameSite cookies.",
)
