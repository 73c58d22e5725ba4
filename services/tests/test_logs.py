"""
The JSON log lines: one object per line, the event's plain fields as keys.
"""

import io
import json
import sys

import pytest
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from webstack.runtime.logs import PIPE_BUF, JSONLineObserver, eventAsRecord, writeWholeLines


def test_aLineCarriesTheMessageAndThePlainFields():
    out = io.StringIO()
    log = Logger(namespace="webstack.test", observer=JSONLineObserver(out))
    log.info("{method} {path} {status}", method="GET", path="/x", status=200, obj=object())
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["msg"] == "GET /x 200"
    assert record["level"] == "info"
    assert record["ns"] == "webstack.test"
    assert (record["method"], record["path"], record["status"]) == ("GET", "/x", 200)
    assert "obj" not in record
    assert record["time"].endswith("+00:00")


def test_aFailureBringsItsErrorAndTraceback():
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    record = eventAsRecord(
        {
            "log_format": "it broke",
            "log_level": LogLevel.critical,
            "log_failure": failure,
            "log_time": 0.0,
            "log_namespace": "x",
        }
    )
    assert record["level"] == "critical"
    assert record["error"] == "ZeroDivisionError: division by zero"
    assert "Traceback" in record["traceback"]


def test_isoTimeSaysWhatDatetimeSays():
    from datetime import datetime, timezone

    from webstack.runtime.logs import isoTime

    for when in [0.0, 1.5, 1795307251.0, 1795307251.9999996, 1795307251.0000004,
                 1795307252.123456, 1795307252.5, 2e9 + 0.25]:  # fmt: skip
        expected = datetime.fromtimestamp(when, tz=timezone.utc).isoformat(timespec="microseconds")
        assert isoTime(when) == expected, when


def encodedEvent(**later):
    """
    An event as the access log makes it: its line encoded in advance, then
    C{later} fields added by an observer on the way.
    """
    from webstack.runtime.logs import ENCODED

    event = {
        "line": "GET /x 200",
        "status": 200,
        "log_level": LogLevel.info,
        "log_namespace": "webstack.access",
        "log_format": "{line}",
        "log_time": 1795307251.25,
    }
    event[ENCODED] = (len(event) + 1, ', "level": "info", "ns": "webstack.access", "msg": "GET /x 200", "status": 200}')
    event.update(later)
    return event


def test_anEncodedEventIsWrittenAsItsFieldsWouldBe():
    from webstack.runtime.logs import ENCODED

    for later in [{}, {"worker": 2}, {"worker": 2, "obj": object(), "log_extra": 1, "note": 'a "b"'}]:
        out = io.StringIO()
        event = encodedEvent(**later)
        JSONLineObserver(out)(event)
        plain = {k: v for k, v in event.items() if k != ENCODED}
        assert out.getvalue() == json.dumps(eventAsRecord(plain), ensure_ascii=False) + "\n"
    assert json.loads(out.getvalue())["worker"] == 2


def test_aFieldAddedToAnEncodedEventIsInItsLine():
    """
    L{addField} (a worker's number on each of its lines) puts the field in
    the ready-made line once; the line is the one the event's fields make,
    whether the field is added first, after another observer's, or to an
    event without a ready-made line.
    """
    from webstack.runtime.logs import ENCODED, addField

    def written(event):
        out = io.StringIO()
        JSONLineObserver(out)(event)
        return out.getvalue()

    def generic(event):
        plain = {k: v for k, v in event.items() if k != ENCODED}
        return json.dumps(eventAsRecord(plain), ensure_ascii=False) + "\n"

    first = encodedEvent()
    addField(first, "worker", 2)
    assert '"worker": 2}' in first[ENCODED][1]
    assert written(first) == generic(first)

    afterAnother = encodedEvent(note='a "b"')
    addField(afterAnother, "worker", 3)
    addField(afterAnother, "shard", "é")
    assert written(afterAnother) == generic(afterAnother)
    assert json.loads(written(afterAnother))["worker"] == 3

    plain = {"log_level": LogLevel.info, "log_namespace": "x", "log_format": "hi", "log_time": 1.0}
    addField(plain, "worker", 1)
    assert json.loads(written(plain))["worker"] == 1


def test_anEncodedEventThatLostAFieldIsWrittenFromItsFields():
    out = io.StringIO()
    event = encodedEvent()
    del event["status"]
    JSONLineObserver(out)(event)
    assert "status" not in json.loads(out.getvalue())


class Writes(io.StringIO):
    """
    An output that counts its flushes (each one a system call on a real
    stream).
    """

    flushes = 0

    def flush(self):
        self.flushes += 1


def batchedObserver(monkeypatch, running=True, ioThread=True, out=None, **options):
    from twisted.internet.task import Clock

    from webstack.runtime import logs

    class Reactor(Clock):
        def __init__(self):
            super().__init__()
            self.running = running
            self.triggers = []

        def addSystemEventTrigger(self, phase, event, f):
            self.triggers.append((phase, event, f))

    reactor = Reactor()
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    monkeypatch.setattr(logs, "_inIOThread", lambda: ioThread)
    monkeypatch.setattr(logs.atexit, "register", lambda f: None)
    out = Writes() if out is None else out
    return JSONLineObserver(out, batched=True, **options), out, reactor


def messages(out):
    return [json.loads(line)["msg"] for line in out.getvalue().splitlines()]


def test_aQuietProcesssInfoLinesAreWrittenTogetherAtTheEndOfTheirTurn(monkeypatch):
    observer, out, reactor = batchedObserver(monkeypatch)
    log = Logger(namespace="webstack.test", observer=observer)
    for n in range(3):
        log.info("line {n}", n=n)
    assert out.getvalue() == ""
    reactor.advance(0)
    assert messages(out) == ["line 0", "line 1", "line 2"]
    assert out.flushes == 1
    reactor.advance(0.05)
    log.info("a turn long after")
    reactor.advance(0)
    assert messages(out)[-1] == "a turn long after" and out.flushes == 2


def test_linesSoonAfterAWriteAreHeldUntilItsTimeHasPassed(monkeypatch):
    observer, out, reactor = batchedObserver(monkeypatch)
    log = Logger(namespace="webstack.test", observer=observer)
    log.info("first")
    reactor.advance(0)
    assert out.flushes == 1
    # A busy process: a line or two a turn (a backend behind the front),
    # and a write each cost it a tenth of its CPU.
    for n in range(3):
        reactor.advance(0.01)
        log.info("line {n}", n=n)
        reactor.advance(0)
    reactor.advance(0.019)
    assert messages(out) == ["first"]
    reactor.advance(0.001)
    assert messages(out) == ["first", "line 0", "line 1", "line 2"]
    assert out.flushes == 2
    assert reactor.getDelayedCalls() == []


def test_aPipesWorthOfHeldLinesIsWrittenAtOnce(monkeypatch):
    observer, out, reactor = batchedObserver(monkeypatch)
    log = Logger(namespace="webstack.test", observer=observer)
    # Each line holds its pad twice (as its message and as a field).
    log.info("{pad}", pad="a" * 1000)
    assert out.getvalue() == ""
    # The next line would take the write past a pipe's worth: what is held
    # goes out now, and the new line waits for the next write.
    log.info("{pad}", pad="b" * 1100)
    assert [m[0] for m in messages(out)] == ["a"] and out.flushes == 1
    # The batch's call still fires, and writes early what came after.
    log.info("after")
    reactor.advance(0)
    assert [m[0] for m in messages(out)][:2] == ["a", "b"] and messages(out)[2] == "after"
    assert out.flushes == 2
    # A line a pipe's worth long on its own is written at once.
    log.info("{pad}", pad="c" * 2100)
    assert messages(out)[-1][0] == "c" and out.flushes == 3


def test_holdingNoTimeWritesEveryTurnsLinesAtItsEnd(monkeypatch):
    observer, out, reactor = batchedObserver(monkeypatch, holdSeconds=0)
    log = Logger(namespace="webstack.test", observer=observer)
    for turn in range(2):
        log.info("one")
        log.info("two")
        assert out.flushes == turn
        reactor.advance(0)
        assert out.flushes == turn + 1
    assert messages(out) == ["one", "two"] * 2


@pytest.mark.parametrize("given, seconds", [(None, 0.05), ("", 0.05), ("0", 0.0), (" 200 ", 0.2)])
def test_theHoldTimeComesFromTheEnvironment(given, seconds):
    from webstack.runtime.logs import holdSeconds

    environ = {} if given is None else {"WEBSTACK_LOG_HOLD_MS": given}
    assert holdSeconds(environ) == seconds


@pytest.mark.parametrize("given", ["fast", "-1", "1001", "nan"])
def test_aHoldTimeThatIsNotOneExitsWithTheReason(given, capsys):
    from webstack.runtime.logs import holdSeconds

    with pytest.raises(SystemExit) as exited:
        holdSeconds({"WEBSTACK_LOG_HOLD_MS": given})
    assert exited.value.code == 2
    assert "WEBSTACK_LOG_HOLD_MS" in capsys.readouterr().err


def test_aWarningIsWrittenAtOnceAfterTheLinesHeldBeforeIt(monkeypatch):
    observer, out, reactor = batchedObserver(monkeypatch)
    log = Logger(namespace="webstack.test", observer=observer)
    log.info("first")
    log.warn("then a warning")
    assert messages(out) == ["first", "then a warning"]
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("and a failure", level=LogLevel.info)
    assert messages(out)[-1] == "and a failure"
    reactor.advance(0)
    assert len(messages(out)) == 3


@pytest.mark.parametrize("running, ioThread", [(False, True), (True, False)])
def test_nothingIsHeldOffTheRunningReactorsThread(monkeypatch, running, ioThread):
    observer, out, reactor = batchedObserver(monkeypatch, running, ioThread)
    Logger(namespace="webstack.test", observer=observer).info("at once")
    assert messages(out) == ["at once"]


def test_whatIsHeldIsWrittenWhenTheReactorShutsDown(monkeypatch):
    observer, out, reactor = batchedObserver(monkeypatch)
    Logger(namespace="webstack.test", observer=observer).info("last words")
    [(phase, event, flush)] = reactor.triggers
    assert (phase, event) == ("after", "shutdown")
    flush()
    assert messages(out) == ["last words"]


class _Pipe(io.TextIOWrapper):
    """
    A text stream whose binary writes are recorded, one per write().
    """

    def __init__(self):
        self.writes = []
        raw = io.BytesIO()
        recording = self.writes

        class Recording(io.BufferedWriter):
            def write(self, data):
                recording.append(bytes(data))
                return super().write(data)

        super().__init__(Recording(raw), encoding="utf-8", write_through=True)


def test_heldLinesAreWrittenInPiecesThatAPipeKeepsWhole():
    out = _Pipe()
    lines = [f'{{"n": {n}, "pad": "{"é" * (n % 50)}"}}\n' for n in range(400)]
    lines.insert(7, '{"long": "' + "x" * 5000 + '"}\n')
    writeWholeLines(out, "".join(lines))
    assert b"".join(out.writes).decode() == "".join(lines)
    for piece in out.writes:
        assert piece.endswith(b"\n")
        assert len(piece) <= PIPE_BUF or piece.count(b"\n") == 1
    assert len(out.writes) < len(lines) / 5


def test_aHeldTurnIsFlushedInPiecesThatAPipeKeepsWhole():
    out = _Pipe()
    observer = JSONLineObserver(out, batched=True)
    # What a busy turn holds: a few hundred access lines.
    observer._held = [f'{{"n": {n}, "msg": "{"a" * 150}"}}\n' for n in range(300)]
    observer.flush()
    assert len(out.writes) > 1
    assert all(len(piece) <= PIPE_BUF and piece.endswith(b"\n") for piece in out.writes)


@pytest.mark.parametrize("pad", ["x", "é"])
def test_aBusyProcessWritesEachPipesWorthInOneWrite(monkeypatch, pad):
    # Held until a line took them past a pipe's worth, the lines went out
    # in two writes (the whole lines that fit, then the rest): twice the
    # system calls.  A pipe's worth is counted in bytes, not characters.
    observer, out, reactor = batchedObserver(monkeypatch, out=_Pipe())
    log = Logger(namespace="webstack.test", observer=observer)
    log.info("quiet")
    reactor.advance(0)  # written at the end of the turn; now busy
    for n in range(200):
        log.info("{n} {pad}", n=n, pad=pad * 300)
    reactor.advance(1)
    written = b"".join(out.writes)
    assert [json.loads(line)["msg"] for line in written.decode().splitlines()] == [
        "quiet"
    ] + [f"{n} {pad * 300}" for n in range(200)]
    longest = max(len(line) for line in written.splitlines(keepends=True))
    assert all(len(piece) <= PIPE_BUF for piece in out.writes)
    # Every write between the first and the last is a pipe's worth, short
    # only by less than the next line.
    assert all(len(piece) > PIPE_BUF - longest for piece in out.writes[1:-1])


def test_theIOThreadIsToldApartAsTwistedTellsIt(monkeypatch):
    import threading

    from twisted.python import threadable

    from webstack.runtime.logs import _inIOThread

    seen = []
    for registered in (None, threading.get_ident()):
        monkeypatch.setattr(threadable, "ioThread", registered)
        seen.append((_inIOThread(), threadable.isInIOThread()))
        other = threading.Thread(
            target=lambda: seen.append((_inIOThread(), threadable.isInIOThread()))
        )
        other.start()
        other.join()
    assert seen == [(False, False), (False, False), (True, True), (False, False)]
