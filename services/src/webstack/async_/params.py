# -*- test-case-name: tests.test_async -*-
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
    if values is None:
        return default
    bounds = (name, integer, minimum, maximum)
    if len(values) != 1:
        raise _refused(bounds, ", given once")
    raw = values[0].decode("utf-8", "replace").strip()
    if not raw:
        raise _refused(bounds, " (the value is missing)")
    try:
        value = float(raw)
    except ValueError:
        raise _refused(bounds, f" (got {raw[:40]!r})") from None
    if not math.isfinite(value):
        raise _refused(bounds, f" (got {raw[:40]!r}, which is not finite)")
    if integer and not value.is_integer():
        raise _refused(bounds, f" (got {raw[:40]!r})")
    if not minimum <= value <= maximum:
        raise _refused(bounds, f" (got {raw[:40]!r})")
    return int(value) if integer else value


def _refused(bounds: tuple[str, bool, float, float], why: str) -> BadParameter:
    """
    The refusal of a parameter: what is allowed, then C{why} not.  Made only
    when refusing: formatting the bounds for every request would cost more
    than reading the number.
    """
    name, integer, minimum, maximum = bounds
    kind = "a whole number" if integer else "a number"
    return BadParameter(f"{name} must be {kind} from {minimum:g} to {maximum:g}{why}")
