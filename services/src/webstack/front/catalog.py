"""
What the landing page says about each demo: its title, the seeds it grows
from (C{../shared/seeds}), and a few links to try.  Routes themselves come
from the configuration; a route this catalog does not know is still listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Demo:
    title: str
    seeds: tuple[str, ...]
    examples: tuple[tuple[str, str], ...] = field(default=())
    note: str = ""


DEMOS: dict[str, Demo] = {
    "async": Demo(
        "Asynchronous responses",
        (
            "001 asynchronous responses (callLater, NOT_DONE_YET)",
            "003 asynchronous responses via Deferred (deferLater)",
            "000 interrupted responses (notifyFinish cancels the work)",
            "002 logging errors (the interruption is logged)",
        ),
        (
            ("/async/delay?seconds=2", "seed 001: answered after 2 s"),
            ("/async/deferred?seconds=2", "seed 003: the same with deferLater"),
            (
                "/async/interruptible?seconds=10",
                "seed 000: press Esc before 10 s, then see /async/stats",
            ),
            ("/async/logged?seconds=10", "seed 002: leave early, read the log"),
            ("/async/stream?chunks=5&interval=1", "write() over time"),
            ("/async/stats", "started / completed / cancelled / in flight"),
        ),
    ),
    "static": Demo(
        "Static files",
        ("static files (twisted.web.static.File): plain files only, never outside the root",),
        (
            ("/static/", "the static site"),
            ("/static/large.txt", "ask for a range: curl -r 0-99"),
        ),
    ),
    "rpy": Demo(
        "rpy scripts (for learning only)",
        (
            "the seeds' own way to run their examples (twistd -n web --path .);"
            " each is re-run per request unless it calls cache()",
        ),
        (
            ("/rpy/", "the scripts"),
            ("/rpy/delay.rpy", "seed 001 as an .rpy"),
            ("/rpy/interruptible.rpy", "seed 000 as an .rpy"),
            ("/rpy/counter.rpy", "the session counter seed, which needs cache()"),
        ),
        note="Learning only: an .rpy is code the server runs; deploy modules.",
    ),
    "wsgi": Demo(
        "WSGI",
        ("004 WSGI (WSGIResource on its own thread pool)",),
        (
            ("/wsgi/hello", "the seed's hello application"),
            ("/wsgi/app/form", "a form that posts and echoes"),
            ("/wsgi/app/environ", "the WSGI environment"),
            ("/wsgi/app/slow?seconds=2", "hold a pool thread (see /metrics)"),
        ),
    ),
    "cgi": Demo(
        "CGI",
        ("004 CGI (CGIScript, FilteredScript)",),
        (
            ("/cgi/date-example.sh", "the seed's date script (CGIScript)"),
            ("/cgi/date-filtered.sh", "the same through /bin/sh (FilteredScript)"),
            ("/cgi/echo.py?a=1&b=<2>", "a Python CGI echoing its query, escaped"),
            ("/cgi/hang.sh", "never answers: stopped, 504, at cgi.timeout"),
        ),
    ),
    "auth": Demo(
        "HTTP authentication",
        ("004 HTTP authentication (guard, Basic and Digest, a per-user realm)",),
        (
            ("/auth/", "log in as alice (wonderland-2026) or bob (builder-2026)"),
        ),
    ),
    "session": Demo(
        "Sessions",
        (
            "004 session basics (getSession, uid, expire)",
            "004 storing objects in the session (ICounter adapter)",
            "004 session endings (sessionTimeout, notifyOnExpire)",
        ),
        (
            ("/session/", "your session id"),
            ("/session/counter", "a visit counter kept in the session (ICounter)"),
            ("/session/logme", "logs your session's expiry"),
            ("/session/expire", "end your session now"),
        ),
    ),
}
