"""
Ops demos: C{make demo} lists them, C{make demo-NAME} runs one against the
stack of C{make up}.  Each says step by step what it does and what to watch,
with the seconds since it began, drives its own load, and ends with its
figures, a one-line verdict and an exit status (0: PASS).  C{make test} runs
each in a short form against real containers (tests/test_demos.py): the
verdict is the assertion.
"""

from . import cancel, chaos, drain, hostile, scale, sessions, slow

DEMOS = {
    "cancel": cancel,
    "scale": scale,
    "chaos": chaos,
    "drain": drain,
    "slow-replica": slow,
    "sessions": sessions,
    "hostile": hostile,
}
