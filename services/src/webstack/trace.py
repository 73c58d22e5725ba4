# -*- test-case-name: tests.test_trace -*-
"""
Follow one request through the stack: every service's log lines that carry
its request id, in time order (C{make trace ID=...}).

Every request has an C{X-Request-Id} (kept from the client when well formed,
else made by the first service that sees it, L{webstack.runtime.site}), the
front forwards it, and every service writes it as C{request_id} in its access
line and in any other line about that request (the async service's logged
interruption, the front's upstream failures).  So one id, looked for in every
service's log, tells what happened to one request everywhere, and the lines'
own C{time} (UTC, to the microsecond, one clock for every container of a
host) puts them in order.

The logs are read as the stack prints them, one JSON object a line after
its source's name and C{" | "}: C{docker compose logs --no-color} (v1:
C{webstack_front_1  | {...}}, v2: C{webstack-front-1  | {...}}), or a file
saved from C{make run} (L{webstack.localstack}: C{  front | {...}}), e.g.
C{make run | tee run.log}.  Anything else on the way (a traceback's lines,
compose's own messages) is passed over.

    python -m webstack.trace ID (--compose "docker compose" | --logs FILE...)
                                [--json] [--timeout SECONDS]

The id may come from C{WEBSTACK_TRACE_ID} instead (the Makefile passes it so,
never through a shell).  Exit status: 0 when lines were found, 1 when none
carries the id, 2 for a bad id or logs that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

ID_ENV = "WEBSTACK_TRACE_ID"

REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
"""
What a request id can be: what L{webstack.runtime.site} keeps from a client's
C{X-Request-Id} or makes itself.
"""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SEPARATOR = " | "

_SHOWN = ("time", "level", "ns", "msg", "request_id", "event", "method", "path", "status", "duration_ms")
"""
Fields of a line that its printed form already shows (in its message, for
an access line: C{GET /auth/ 200 3.1ms}), so they are not repeated as
C{key=value}.
"""


class TraceError(Exception):
    """
    The trace cannot be made: a bad id, or logs that cannot be read.  Its
    message is the one line the user sees.
    """


@dataclass(frozen=True)
class Line:
    """
    One log line about the request.

    @ivar when: its C{time}, in seconds since the epoch.
    @ivar source: the container (or C{make run}'s service) that wrote it.
    @ivar record: the JSON object the line holds.
    @ivar order: its place in the logs as read: the tie-break between two
        lines of the same microsecond, which keeps each source's own order.
    """

    when: float
    source: str
    record: dict[str, Any]
    order: int


def checkedId(requestId: str) -> str:
    """
    C{requestId} if it can be a request id, else a L{TraceError} that says
    what one looks like.
    """
    if not REQUEST_ID.match(requestId):
        raise TraceError(
            f"{requestId!r} is not a request id: 1 to 64 of A-Z a-z 0-9 . _ : -"
            " (the X-Request-Id header of a response, or request_id in a log line)"
        )
    return requestId


def parseLine(text: str, order: int) -> Line | None:
    """
    The L{Line} that C{text} ("SOURCE | {json}", or a bare JSON object) holds,
    or C{None} for anything else: a line that is not a JSON object, or one
    without a C{time} this module can read.
    """
    text = _ANSI.sub("", text).rstrip("\r\n")
    source, separator, payload = text.partition(_SEPARATOR)
    if not separator:
        source, payload = "-", text
    payload = payload.strip()
    if not payload.startswith("{"):
        return None
    try:
        record = json.loads(payload)
        when = datetime.fromisoformat(record["time"]).timestamp()
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(record, dict):
        return None
    return Line(when, source.strip() or "-", record, order)


def matching(texts: Iterable[str], requestId: str) -> list[Line]:
    """
    The lines of C{texts} whose C{request_id} is C{requestId}, in time order
    (lines of the same instant in the order they were read).
    """
    found = []
    for order, text in enumerate(texts):
        # Most lines are about other requests: look for the id before
        # paying for the JSON.
        if requestId not in text:
            continue
        line = parseLine(text, order)
        if line is not None and line.record.get("request_id") == requestId:
            found.append(line)
    found.sort(key=lambda line: (line.when, line.order))
    return found


def formatLine(line: Line, sourceWidth: int = 0) -> str:
    """
    One line for people: time, source, level, message, then the fields the
    message does not show and that have a value, as C{key=value}.
    """
    record = line.record
    extra = " ".join(
        f"{key}={json.dumps(value) if isinstance(value, str) and ' ' in value else value}"
        for key, value in record.items()
        if key not in _SHOWN and value is not None and not isinstance(value, (dict, list))
    )
    head = (
        f"{record.get('time', '-')}  {line.source:<{sourceWidth}}  "
        f"{str(record.get('level', '-')):<5}  {record.get('msg', '')}"
    )
    return f"{head}  {extra}" if extra else head


def formatJSON(line: Line) -> str:
    """
    The line's own JSON object, with its C{source} added.
    """
    return json.dumps({**line.record, "source": line.source}, sort_keys=False)


def composeLogs(command: str, timeout: float) -> Iterator[str]:
    """
    The lines of C{COMMAND logs --no-color} (C{command}: "docker compose" or
    "docker-compose"; the project is C{COMPOSE_PROJECT_NAME}, as for every
    other target), read as they come so that megabytes of logs are never
    held at once, and stopped after C{timeout} seconds.
    """
    argv = [*shlex.split(command), "logs", "--no-color"]
    # Its complaints go to a file, not a pipe nobody reads until the end
    # (which, full, would stop it).
    with tempfile.TemporaryFile("w+", errors="replace") as complaints:
        try:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=complaints, text=True, errors="replace"
            )
        except OSError as e:
            raise TraceError(f"cannot run {' '.join(argv)}: {e}") from e
        deadline = time.monotonic() + timeout
        try:
            assert process.stdout is not None
            for text in process.stdout:
                if time.monotonic() > deadline:
                    raise TraceError(f"{' '.join(argv)} took more than {timeout:g} s")
                yield text
            status = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            if status != 0:
                complaints.seek(0)
                why = complaints.read().strip().splitlines()
                raise TraceError(
                    f"{' '.join(argv)} failed (exit {status})" + (f": {why[-1]}" if why else "")
                )
        except subprocess.TimeoutExpired as e:
            raise TraceError(f"{' '.join(argv)} took more than {timeout:g} s") from e
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def fileLogs(paths: list[str]) -> Iterator[str]:
    """
    The lines of each file in C{paths} (C{-}: standard input), one after
    the other.
    """
    for path in paths:
        if path == "-":
            yield from sys.stdin
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                yield from f
        except OSError as e:
            raise TraceError(f"cannot read {path}: {e.strerror}") from e


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make trace",
        description="Every service's log lines of one request, in time order.",
    )
    parser.add_argument(
        "id", nargs="?", help=f"the request id (default: ${ID_ENV}): a response's X-Request-Id"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--compose", metavar="COMMAND", help='read "COMMAND logs" (docker compose, docker-compose)'
    )
    source.add_argument(
        "--logs", metavar="FILE", nargs="+", help="read files saved from make run (- for stdin)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines, with their source")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="give up reading after this many seconds (300)"
    )
    return parser


def main(
    argv: list[str] | None = None,
    environ: dict[str, str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    args = _parser().parse_args(argv)
    try:
        requestId = checkedId(args.id or environ.get(ID_ENV, ""))
        if args.timeout <= 0:
            raise TraceError(f"--timeout must be above 0, not {args.timeout:g}")
        texts = composeLogs(args.compose, args.timeout) if args.compose else fileLogs(args.logs)
        lines = matching(texts, requestId)
    except TraceError as e:
        err.write(f"trace: {e}\n")
        return 2
    where = f"{args.compose} logs" if args.compose else ", ".join(args.logs)
    if not lines:
        err.write(
            f"trace: no log line has request_id {requestId} in {where}"
            " (a container keeps its last 3 x 10 MB of logs)\n"
        )
        return 1
    width = max(len(line.source) for line in lines)
    for line in lines:
        out.write((formatJSON(line) if args.json else formatLine(line, width)) + "\n")
    sources = sorted({line.source for line in lines})
    span = (lines[-1].when - lines[0].when) * 1000
    err.write(
        f"trace: {len(lines)} line(s) from {', '.join(sources)};"
        f" {span:.1f} ms from the first to the last\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
