# -*- test-case-name: tests.test_session -*-
"""
Seed 004, "session endings": a C{Session} subclass with its own
C{sessionTimeout}, set as the C{Site}'s C{sessionFactory}, and
C{notifyOnExpire} to hear of each expiry.

Served at C{/session/logme}.  The seed's C{ShortSession} (5 s in its
example) is the runtime's, its timeout C{session.timeout}
(L{webstack.runtime.sessions.SiteSessions}); its C{print} is a log line; its
class-level set of uids is the resource's own.  As the seed says, keep
visiting to keep the session alive: current Twisted only refreshes a session
looked up twice in one request, so the runtime refreshes it on every visit.
"""

from twisted.logger import Logger
from twisted.web.resource import Resource


class ExpirationLogger(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self):
        super().__init__()
        self.sessions = set()

    def render_GET(self, request):
        session = request.getSession()
        if session.uid not in self.sessions:
            self.sessions.add(session.uid)
            session.notifyOnExpire(lambda: self._expired(session.uid))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Session %s expires %g s after your last visit." % (
            session.uid,
            session.sessionTimeout,
        )

    def _expired(self, uid):
        self.log.info(
            "Session {uid} has expired.", event="session_expired", uid=uid.decode("ascii")
        )
        self.sessions.remove(uid)
