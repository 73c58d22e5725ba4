# -*- test-case-name: tests.test_wsgi -*-
"""
A small but real WSGI application beside the seed's hello, served at
C{/wsgi/app/}: a form that posts and echoes, a view of the WSGI environment,
a deliberately slow page to see the thread pool fill up (bounded by
C{slow_max_seconds}, and cut short when its client leaves), and a page that
raises, to see Twisted answer 500 and log the traceback while the service
stays up.

Plain WSGI on purpose (no framework): what Twisted hands an application is
all there is to see.
"""

from __future__ import annotations

import json
import time
from html import escape
from urllib.parse import parse_qs

CLIENT_GONE_KEY = "webstack.client_gone"
"""
The environ key of a L{threading.Event} set when the request's client has
gone (see L{webstack.wsgi.resource}); the application imports nothing of
the server.
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}<p><a href="{root}/">back</a></p></body></html>
"""

_HIDDEN = ("wsgi.", "HTTP_AUTHORIZATION", "HTTP_COOKIE")


def _html(start_response, title, body, root, status="200 OK"):
    page = _PAGE.format(title=escape(title), body=body, root=escape(root)).encode()
    start_response(
        status,
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))],
    )
    return [page]


def makeApplication(maxSlowSeconds: float):
    """
    The application, with the slow page bounded by C{maxSlowSeconds}.
    """

    def application(environ, start_response):
        root = environ.get("SCRIPT_NAME", "")
        path = environ.get("PATH_INFO", "") or "/"
        method = environ["REQUEST_METHOD"]

        if path == "/":
            links = "".join(
                f'<li><a href="{escape(root)}/{p}">{p}</a> {escape(w)}</li>'
                for p, w in (
                    ("form", "post a form, see it echoed"),
                    ("environ", "the WSGI environment of your request"),
                    ("slow?seconds=2", "holds a pool thread for 2 s"),
                    ("raise", "an application error: 500, logged"),
                )
            )
            return _html(start_response, "A WSGI application", f"<ul>{links}</ul>", root)

        if path == "/form":
            echoed = ""
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                fields = parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
                items = "".join(
                    f"<li>{escape(k)} = {escape(v)}</li>"
                    for k, values in fields.items()
                    for v in values
                )
                echoed = f"<h2>You posted</h2><ul>{items}</ul>"
            form = (
                f'<form method="post" action="{escape(root)}/form">'
                '<input name="name" placeholder="name"> '
                '<input name="message" placeholder="message"> '
                "<button>post</button></form>"
            )
            return _html(start_response, "A form", form + echoed, root)

        if path == "/environ":
            shown = {
                k: v
                for k, v in sorted(environ.items())
                if isinstance(v, (str, int, bool)) and not k.startswith(_HIDDEN)
            }
            body = json.dumps(shown, indent=1).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]

        if path == "/slow":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            try:
                seconds = float(query.get("seconds", ["2"])[0])
            except ValueError:
                seconds = -1.0
            if not 0 <= seconds <= maxSlowSeconds:
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [f"seconds must be a number from 0 to {maxSlowSeconds:g}\n".encode()]
            # Blocks this pool thread, as a slow WSGI app does, but no longer
            # than its client waits: webstack sets this event when the client
            # leaves (webstack.wsgi.resource); elsewhere, a plain sleep.
            gone = environ.get(CLIENT_GONE_KEY)
            if gone is None:
                time.sleep(seconds)
            elif gone.wait(seconds):
                start_response("499 Client Closed Request", [("Content-Type", "text/plain")])
                return [b"the client left; stopped early\n"]
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"slept %g s on a pool thread\n" % seconds]

        if path == "/raise":
            raise RuntimeError("this application raised on purpose")

        return _html(start_response, "Not found", "", root, "404 Not Found")

    return application
