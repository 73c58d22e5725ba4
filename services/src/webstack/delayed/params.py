# -*- test-case-name: webstack.tests.test_delayed -*-
"""
Query parameters of the delayed endpoints, checked before any work starts.

A parameter that is absent takes its default (C{seconds=5}, like the seeds);
one that is present must be a finite number within its configured bounds.
Anything else is a L{BadParameter}, answered with C{400} and a message that
says what is allowed.
"""

from __future__ import annotations

import math


class BadParameter(ValueError):
    """
    A query parameter is malformed or out of bounds; C{str()} says what is
    allowed, for the client.
    """


def numberArgument(
    request,
    name: str,
    *,
    default: float,
    maximum: float,
    minimum: float = 0.0,
    integer: bool = False,
) -> float:
    """
    Read the query parameter C{name} of C{request} as a number.

    @raise BadParameter: if it is given but empty, repeated, non-numeric,
        non-finite, fractional when C{integer}, or outside
        C{[minimum, maximum]}.
    """
    values = request.args.get(name.encode("ascii"))
    kind = "a whole number" if integer else "a number"
    allowed = f"{name} must be {kind} from {minimum:g} to {maximum:g}"
    if values is None:
        return default
    if len(values) != 1:
        raise BadParameter(f"{allowed}, given once")
    raw = values[0].decode("utf-8", "replace").strip()
    if not raw:
        raise BadParameter(f"{allowed} (the value is missing)")
    try:
        value = float(raw)
    except ValueError:
        raise BadParameter(f"{allowed} (got {raw[:40]!r})") from None
    if not math.isfinite(value):
        raise BadParameter(f"{allowed} (got {raw[:40]!r}, which is not finite)")
    if integer and not value.is_integer():
        raise BadParameter(f"{allowed} (got {raw[:40]!r})")
    if not minimum <= value <= maximum:
        raise BadParameter(f"{allowed} (got {raw[:40]!r})")
    return int(value) if integer else value
