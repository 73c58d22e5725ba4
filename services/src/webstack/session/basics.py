# -*- test-case-name: tests.test_session -*-
"""
Seed 004, "session basics": C{request.getSession()} and its C{uid}, and
C{session.expire()}.

Served at C{/session/} (your session id) and C{/session/expire}.  The same
as the seed but for bytes; the session's cookie flags and its sliding expiry
are the runtime's (L{webstack.runtime.sessions}).
"""

from twisted.web.resource import Resource


class ShowSession(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Your session id is: " + request.getSession().uid


class ExpireSession(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.getSession().expire()
        return b"Your session has been expired."
