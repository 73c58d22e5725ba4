# -*- test-case-name: tests.test_logs -*-
"""
Structured logging: one JSON object per line on stdout, through twisted.logger.

twistd picks its observer with C{--logger}; every service is started with
C{--logger=webstack.runtime.logs.jsonLogger}, so Twisted's own events (the
legacy C{twisted.python.log.err} of seed 002 included) come out as JSON too.

A line has C{time} (ISO 8601, UTC), C{level}, C{ns} (the logger's namespace),
C{msg} (the formatted message), every plain field of the event (so
C{log.info("...", route=r, status=s)} gives C{"route"} and C{"status"} keys),
and C{error}/C{traceback} when a failure is attached.

An event written once per request (the access log) may bring the JSON of its
line ready-made, under L{ENCODED}: see L{JSONLineObserver}.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import sys
import time
from _thread import get_ident
from functools import lru_cache
from itertools import islice
from typing import IO, Any

from twisted.logger import ILogObserver, LogLevel, formatEvent
from twisted.python import threadable
from zope.interface import implementer

LOG_LEVEL_ENV = "WEBSTACK_LOG_LEVEL"
LOG_HOLD_ENV = "WEBSTACK_LOG_HOLD_MS"
DEFAULT_HOLD_SECONDS = 0.05
"""
How long a busy process's info lines may be held before they are written
(see L{JSONLineObserver}): short beside anything a person or a log
collector notices, long beside a busy server's turn.
"""
MAX_HOLD_SECONDS = 1.0

# LogLevel constants compare slowly (each comparison walks the constants):
# the observer compares these numbers instead.
_PRIORITY = {level: n for n, level in enumerate(LogLevel.iterconstants())}
_INFO = _PRIORITY[LogLevel.info]

ENCODED = "webstack_encoded"
"""
The key of an event's own line, encoded in advance: C{(count, text)}, where
C{text} is everything after the C{time} value, from the comma before
C{"level"} to the closing brace, as L{eventAsRecord} and C{json.dumps} would
write it, and C{count} is how many keys the event had then, this one
included.  The emitter of such an event promises that the text says what
the event's fields say; other observers see an ordinary event.

An observer on the way that adds fields (a worker adds C{"worker"}) adds
them after the others, so L{JSONLineObserver} encodes the keys past
C{count} and puts them before the brace, where a dict of the whole event
would have them too; an event with fewer keys than C{count} is written the
ordinary way.
"""

_SKIP = frozenset(
    {"format", "message", "time", "system", "isError", "why", "failure", "line", ENCODED}
)
_PLAIN = (str, int, float, bool, type(None))

_second: tuple[int, str] = (-1, "")


def isoTime(when: float) -> str:
    """
    C{when} (seconds since the epoch) in ISO 8601, UTC, to the microsecond:
    what C{datetime.fromtimestamp(when, timezone.utc).isoformat()} says, with
    the date and time of day made once a second, not once a line.
    """
    global _second
    second = math.floor(when)
    micro = round((when - second) * 1e6)
    if micro >= 1000000:
        second += 1
        micro -= 1000000
    cached, prefix = _second
    if second != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        # One tuple, replaced whole: an observer called from another thread
        # sees either the old second or the new one, never half of each.
        _second = (second, prefix)
    return f"{prefix}.{micro:06d}+00:00"


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
        "time": isoTime(event.get("log_time", 0.0)),
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


@lru_cache(maxsize=1024)
def _jsonKey(key: str) -> str:
    """
    C{key} as JSON: the same few field names on every line.
    """
    return json.dumps(key, ensure_ascii=False)


def _jsonValue(value: Any) -> str:
    """
    A plain value as JSON: an integer as itself, without the encoder (which
    C{json.dumps} builds anew on each call given C{ensure_ascii=False}).
    """
    return str(value) if type(value) is int else json.dumps(value, ensure_ascii=False)


def _laterFields(event: dict[str, Any], count: int) -> str:
    """
    The plain fields added to C{event} after its first C{count} keys, as
    they follow the others in its JSON line.  (A worker's C{"worker": N} is
    one, on every line: an integer is written as itself, without the
    encoder.)
    """
    later = ""
    for key, value in islice(event.items(), count, None):
        if key.startswith("log_") or key in _SKIP or not isinstance(value, _PLAIN):
            continue
        later += f", {_jsonKey(key)}: {_jsonValue(value)}"
    return later


def addField(event: dict[str, Any], key: str, value: int | str) -> None:
    """
    Add C{key: value}, a plain field, to C{event}, and to its ready-made
    line (L{ENCODED}) if it has one that is up to date: what
    L{JSONLineObserver} would otherwise encode on every line, once per
    event.  A worker adds its number to every line this way.
    """
    encoded = event.get(ENCODED)
    if encoded is not None and key not in event and len(event) == encoded[0]:
        count, text = encoded
        event[ENCODED] = (count + 1, f"{text[:-1]}, {_jsonKey(key)}: {_jsonValue(value)}}}")
    event[key] = value


@implementer(ILogObserver)
class JSONLineObserver:
    """
    Write each event at or above C{level} as one JSON line to C{out},
    flushed at once, so that a container's log collector sees it at once.

    With C{batched}, "at once" is the end of the reactor's turn for a quiet
    process, and at most C{holdSeconds} (50 ms unless told) for a busy one:
    the lines of info and debug events logged on the reactor thread while
    it runs are held and written together, one write instead of one per
    line (a busy server logs a line per request, and the system call costs
    more than making the line).  They are written at the end of the turn
    unless the last write was less than C{holdSeconds} ago; then once that
    much time has passed since it, or as soon as the next line would take
    them past a pipe's worth (L{PIPE_BUF}): one write each, not a full one
    and a short one.  Held to the end of the turn only, a backend
    behind the front (a request or two a turn) paid a write per request: a
    tenth of its CPU.  Every other line (a warning or worse, one with a
    failure, one from another thread, or when the reactor is not running)
    is written at once; on the reactor thread, after the lines held before
    it, so their order is kept.  What is held is also written when the
    reactor shuts down and when the process exits; a process killed
    outright loses at most C{holdSeconds} of info lines.  C{holdSeconds} 0
    writes every turn's lines at its end.

    An event that carries its line already encoded (under L{ENCODED}) only
    has its time put in front: building a dict of its fields and encoding it
    again costs more than all the rest of an access line.

    (The level check is done here rather than with a
    L{FilteringLogObserver}, whose per-namespace lookup costs more than the
    rest of an access log line.)
    """

    def __init__(
        self,
        out: IO[str],
        level: LogLevel = LogLevel.info,
        batched: bool = False,
        holdSeconds: float = DEFAULT_HOLD_SECONDS,
    ) -> None:
        self._out = out
        self._minimum = _PRIORITY[level]
        self._batched = batched
        self._holdSeconds = holdSeconds
        self._held: list[str] = []
        self._heldSize = 0
        self._due = None
        self._lastWrite = -math.inf
        self._reactor = None
        if batched:
            atexit.register(self.flush)

    def __call__(self, event: dict[str, Any]) -> None:
        priority = _PRIORITY.get(event.get("log_level"), 1)
        if priority < self._minimum:
            return
        encoded = event.get(ENCODED)
        if encoded is not None and len(event) >= encoded[0]:
            count, text = encoded
            if len(event) > count:
                text = text[:-1] + _laterFields(event, count) + "}"
            line = f'{{"time": "{isoTime(event.get("log_time", 0.0))}"{text}\n'
        else:
            line = json.dumps(eventAsRecord(event), default=repr, ensure_ascii=False) + "\n"
        if self._batched and priority <= _INFO and "log_failure" not in event:
            if self._hold(line):
                return
        if self._held and _inIOThread():
            self.flush()
        self._out.write(line)
        self._out.flush()

    def _hold(self, line: str) -> bool:
        """
        Hold C{line} with the others (writing those first if it would take
        them past a pipe's write), if the reactor runs and this is its
        thread; say whether it was kept.
        """
        reactor = self._reactor
        if reactor is None:
            # Looked up, never imported: importing it here would install the
            # default reactor before twistd installs the one asked for.
            reactor = self._reactor = sys.modules.get("twisted.internet.reactor")
            if reactor is None:
                return False
            reactor.addSystemEventTrigger("after", "shutdown", self.flush)
        if not reactor.running or not _inIOThread():
            return False
        # PIPE_BUF counts bytes (an access line is ASCII but for a path's
        # undecodable bytes).
        length = len(line) if line.isascii() else len(line.encode("utf-8", "backslashreplace"))
        size = self._heldSize + length
        if size > PIPE_BUF and self._held:
            # What is held fills one write, and this line would overflow
            # it (into a second write of its own): written now, alone.
            self.flush()
            size = length
        self._held.append(line)
        self._heldSize = size
        if size >= PIPE_BUF:
            self.flush()
        elif self._due is None:
            # One call per batch, left to fire even if a full pipe's worth
            # was written since: it then writes what came after, early.
            wait = self._lastWrite + self._holdSeconds - reactor.seconds()
            self._due = reactor.callLater(max(wait, 0), self._flushDue)
        return True

    def _flushDue(self) -> None:
        self._due = None
        self.flush()

    def flush(self) -> None:
        """
        Write the lines held.
        """
        held, self._held = self._held, []
        if held:
            self._heldSize = 0
            writeWholeLines(self._out, "".join(held))
            if self._reactor is not None:
                self._lastWrite = self._reactor.seconds()


def _inIOThread() -> bool:
    """
    What Twisted's C{threadable.isInIOThread} says, in one C call rather
    than four in Python (it asks C{threading.current_thread()} for its
    C{ident}): asked for every log line.
    """
    return get_ident() == threadable.ioThread


PIPE_BUF = select.PIPE_BUF
"""
The most bytes one write() to a pipe puts there in one piece (4096 on
Linux): a longer write may be interleaved with another process's.
"""


def writeWholeLines(out: IO[str], text: str) -> None:
    """
    Write C{text}, whole lines, to C{out} in writes of at most L{PIPE_BUF}
    bytes each (a line longer than that alone in its write).

    Several processes may share one standard output (a front's workers, the
    processes of a container): each write of a pipe up to C{PIPE_BUF} bytes
    lands in one piece, so the lines of one process are never cut by
    another's; a held turn's worth of lines, written at once, could be.
    """
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(text)
        out.flush()
        return
    out.flush()
    data = text.encode(getattr(out, "encoding", None) or "utf-8", "backslashreplace")
    start, size = 0, len(data)
    while start < size:
        end = start + PIPE_BUF
        if end < size:
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else data.find(b"\n", end) + 1 or size
        buffer.write(data[start:end])
        buffer.flush()
        start = end


def jsonLogger() -> ILogObserver:
    """
    The observer factory named by C{twistd --logger}: JSON lines on stdout at
    the level given by C{$WEBSTACK_LOG_LEVEL} (default C{info}), info lines
    held at most C{$WEBSTACK_LOG_HOLD_MS} milliseconds (default 50).
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
    return JSONLineObserver(sys.stdout, level, batched=True, holdSeconds=holdSeconds())


def holdSeconds(environ=os.environ) -> float:
    """
    How long info lines may be held, from C{$WEBSTACK_LOG_HOLD_MS}
    (milliseconds, 0 to 1000; default 50); exits 2 with the reason if it is
    not such a number.
    """
    given = environ.get(LOG_HOLD_ENV, "").strip()
    if not given:
        return DEFAULT_HOLD_SECONDS
    try:
        seconds = float(given) / 1000
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_HOLD_SECONDS:
        sys.stderr.write(
            f"environment: {LOG_HOLD_ENV} = {given!r} is invalid:"
            f" milliseconds from 0 to {MAX_HOLD_SECONDS * 1000:g}\n"
        )
        raise SystemExit(2)
    return seconds
