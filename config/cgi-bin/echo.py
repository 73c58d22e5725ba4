#!/usr/bin/env python3
"""
A Python CGI that echoes its query string and posted form, HTML-escaped,
and the environment it was given (the CGI variables and nothing of the
server's own).
"""

import html
import os
import sys
from urllib.parse import parse_qs


def main():
    query = parse_qs(os.environ.get("QUERY_STRING", ""))
    length = int(os.environ.get("CONTENT_LENGTH") or 0)
    form = parse_qs(sys.stdin.read(length)) if length else {}

    def items(mapping):
        return "".join(
            f"<li>{html.escape(k)} = {html.escape(v)}</li>"
            for k, values in sorted(mapping.items())
            for v in values
        )

    environment = "".join(
        f"<li>{html.escape(k)}</li>" for k in sorted(os.environ)
    )
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>echo</title>"
        f"</head><body><h1>echo.py</h1><h2>query</h2><ul>{items(query)}</ul>"
        f"<h2>form</h2><ul>{items(form)}</ul>"
        f"<h2>environment names</h2><ul>{environment}</ul></body></html>"
    )
    sys.stdout.write("Content-Type: text/html; charset=utf-8\r\n\r\n" + body)


main()
