"""
The reactor webstack runs on, for C{twistd --reactor=webstack}: epoll
without a log context around every socket event (L{webstack.runtime.reactor}).
"""

from twisted.application.reactors import Reactor

webstack = Reactor(
    "webstack",
    "webstack.runtime.reactor",
    "epoll, each ready socket handled without a log context (webstack.runtime.reactor)",
)
