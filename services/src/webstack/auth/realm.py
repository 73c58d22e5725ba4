# -*- test-case-name: tests.test_auth -*-
"""
Seed 004, "HTTP authentication": the realm that gives each user the files of
their own C{public_html}.

The seed builds the path with C{"/home/%s/public_html" % (avatarId,)} and
warns about it itself ("vulnerable to certain unintentional information
disclosure attacks ... This sort of problem is exactly the reason FilePath
exists").  Here the path is made with L{FilePath.child} (which refuses
C{..} and C{/}) and served by L{SafeFile}, confined to that user's
C{public_html}, symbolic links included.  The logout callback, the seed's
C{lambda: None}, counts logouts.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.cred.portal import IRealm
from twisted.python.filepath import FilePath, InsecurePath
from twisted.web.resource import IResource
from zope.interface import implementer

from webstack.runtime.errors import ErrorPage
from webstack.runtime.files import SafeFile


@implementer(IRealm)
class PublicHTMLRealm:
    def __init__(self, homes: FilePath, loggedOut: Callable[[], None]) -> None:
        self._homes = homes
        self._loggedOut = loggedOut

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IResource in interfaces:
            return (IResource, self._publicHTML(avatarId), self._loggedOut)
        raise NotImplementedError()

    def _publicHTML(self, avatarId):
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        try:
            public = self._homes.child(name).child("public_html")
        except InsecurePath:
            return ErrorPage(404, "No such user directory.")
        if not public.isdir():
            return ErrorPage(404, "This user has no public_html.")
        return SafeFile(public.path, cacheControl=b"private, no-store")
