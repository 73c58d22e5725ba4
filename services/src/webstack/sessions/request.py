# -*- test-case-name: webstack.tests.test_sessions -*-
"""
The session service's request: what Twisted's C{getSession} leaves out.

  - Sliding expiry.  C{Request.getSession} refreshes a session only when it
    is asked for twice in one request; a session found by its cookie is not
    touched, so it expires C{sessionTimeout} after it was made however often
    it is used.  Here every lookup touches it.
  - Cookie flags.  Twisted sets the session cookie with C{Path=/} and, on
    HTTPS, C{Secure}; nothing else.  Here it also has C{HttpOnly} and
    C{SameSite=Lax}, and C{Secure} when the client reached the front over
    HTTPS (C{X-Forwarded-Proto: https} from a trusted proxy).
"""

from __future__ import annotations

import ipaddress

from webstack.runtime.site import ObservedRequest


class SessionRequest(ObservedRequest):
    trustedProxies: tuple = ()

    def getSession(self, sessionInterface=None, forceNotSecure=False):
        known = self.session is not None
        before = len(self.cookies)
        session = super().getSession(None, forceNotSecure)
        if not known:
            session.touch()
        if len(self.cookies) > before:
            flags = b"; HttpOnly; SameSite=Lax"
            if self._reachedOverHTTPS() and not self.isSecure():
                flags += b"; Secure"
            for index in range(before, len(self.cookies)):
                self.cookies[index] += flags
        if sessionInterface:
            return session.getComponent(sessionInterface)
        return session

    def _reachedOverHTTPS(self) -> bool:
        if self.isSecure():
            return True
        proto = self.getHeader(b"x-forwarded-proto")
        if proto is None or proto.strip().lower() != b"https":
            return False
        peer = getattr(self.getClientAddress(), "host", "")
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trustedProxies)
