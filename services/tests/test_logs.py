"""
The JSON log lines: one object per line, the event's plain fields as keys.
"""

import io
import json

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from webstack.runtime.logs import JSONLineObserver, eventAsRecord


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
