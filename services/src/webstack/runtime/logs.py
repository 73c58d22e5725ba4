# -*- test-case-name: webstack.tests.test_logs -*-
"""
Structured logging: one JSON object per line on stdout, through twisted.logger.

twistd picks its observer with C{--logger}; every service is started with
C{--logger=webstack.runtime.logs.jsonLogger}, so Twisted's own events (the
legacy C{twisted.python.log.err} of seed 002 included) come out as JSON too.

A line has C{time} (ISO 8601, UTC), C{level}, C{ns} (the logger's namespace),
C{msg} (the formatted message), every plain field of the event (so
C{log.info("...", route=r, status=s)} gives C{"route"} and C{"status"} keys),
and C{error}/C{traceback} when a failure is attached.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

LOG_LEVEL_ENV = "WEBSTACK_LOG_LEVEL"

# LogLevel constants compare slowly (each comparison walks the constants):
# the observer compares these numbers instead.
_PRIORITY = {level: n for n, level in enumerate(LogLevel.iterconstants())}

_SKIP = frozenset(
    {"format", "message", "time", "system", "isError", "why", "failure", "line"}
)
_PLAIN = (str, int, float, bool, type(None))


def eventAsRecord(event: dict[str, Any]) -> dict[str, Any]:
    """
    Turn a twisted.logger event into the flat dict written as one JSON line.
    """
    level = event.get("log_level", LogLevel.info)
    # An event logged as "{line}" carries its message ready-made (the access
    # log does, to skip the formatter on the busiest path).
    if event.get("log_format") == "{line}" and isinstance(event.get("line"), str):
        message = event["line"]
    else:
        message = formatEvent(event)
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(
            event.get("log_time", 0.0), tz=timezone.utc
        ).isoformat(timespec="microseconds"),
        "level": level.name,
        "ns": event.get("log_namespace", "-"),
        "msg": message,
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _SKIP or key in record:
            continue
        if isinstance(value, _PLAIN):
            record[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        record["traceback"] = failure.getTraceback()
    return record


@implementer(ILogObserver)
class JSONLineObserver:
    """
    Write each event at or above C{level} as one JSON line to C{out},
    flushing per line so that a container's log collector sees it at once.

    (The level check is done here rather than with a
    L{FilteringLogObserver}, whose per-namespace lookup costs more than the
    rest of an access log line.)
    """

    def __init__(self, out: IO[str], level: LogLevel = LogLevel.info) -> None:
        self._out = out
        self._minimum = _PRIORITY[level]

    def __call__(self, event: dict[str, Any]) -> None:
        if _PRIORITY.get(event.get("log_level"), 1) < self._minimum:
            return
        line = json.dumps(eventAsRecord(event), default=repr, ensure_ascii=False)
        self._out.write(line + "\n")
        self._out.flush()


def jsonLogger() -> ILogObserver:
    """
    The observer factory named by C{twistd --logger}: JSON lines on stdout at
    the level given by C{$WEBSTACK_LOG_LEVEL} (default C{info}).
    """
    name = os.environ.get(LOG_LEVEL_ENV, "info").strip().lower()
    try:
        level = LogLevel.levelWithName(name)
    except Exception:
        sys.stderr.write(
            f"environment: {LOG_LEVEL_ENV} = {name!r} is invalid:"
            " allowed values are debug, info, warn, error, critical\n"
        )
        raise SystemExit(2)
    return JSONLineObserver(sys.stdout, level)
