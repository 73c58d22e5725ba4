# -*- test-case-name: tests.test_collector -*-
"""
CPython's cyclic garbage collector, set for a server that holds many
requests at once.

Nearly everything a request makes is freed by reference counting the moment
the request ends; the cyclic collector exists for the rest.  CPython's
defaults suit short scripts: a young collection every 700 net allocations,
the middle generation every 10 of those, and a full collection every 10 of
those once the objects promoted since the last one are a quarter of the old
generation.  A server holding thousands of requests (the front with 5,000
clients of a 2-second delay arriving over 5 s) keeps each one's objects
alive across many young collections: they are walked again at each one, are
promoted, and their growth then sets off full collections that walk the whole
heap.  Measured on the front (5,000 clients as C{make bench}'s lateness run
sends them, one worker, with C{gc.callbacks} timing each collection): 25
middle and 2 full collections during the run, the longest full one 142 ms,
and none of them found garbage; the lateness p99 was 163 ms against a 2-s
answer (182 ms in a whole C{make bench} run).

So each service does two things when it starts serving:

  - L{freezeStartupObjects}: what start-up made (modules, settings,
    resources, metrics) moves to the permanent generation, out of every
    collection's walk;
  - L{tuneCollector}: young collections every C{runtime.gc_threshold} net
    allocations (default 10,000), the middle generation every 50 young
    collections and the full one every 100 middle ones (still only once
    enough has been promoted).  Measured with C{make bench}, one run with
    C{gc_threshold = 0} and one with the default:
    the front's lateness p99 with 5,000 clients 53 -> 15 ms, with 9,000
    160 -> 15 ms; the async service's own, direct, 62 -> 7 and 55 -> 13 ms;
    CPU per request and the front's memory per held request (6.3 KiB)
    unchanged.  Cyclic garbage is still collected, only less often.

C{runtime.gc_threshold = 0} leaves CPython's own thresholds.

Fewer collections make each middle one longer: whatever a request leaves in
a reference cycle waits in the middle generation, and the collection that
frees it walks all of it.  So nothing on a request's path may rely on the
collector: the front's closed upstream connections once did (a parser and
its protocol; a connector's factory keeping the first request), and in
C{make bench}'s 9,000-client run one middle collection found 145,604 of
their objects and took 258 ms.  test_front_client holds that path to
reference counting alone.
"""

from __future__ import annotations

import gc

from twisted.logger import Logger

OLDER_THRESHOLDS = (50, 100)
"""
The middle and old generations' thresholds beside the young one: how many
collections of the next younger generation come between two of each.
"""

log = Logger()


def tuneCollector(threshold: int, collector=gc) -> tuple[int, ...]:
    """
    Set the collector's thresholds: young collections every C{threshold} net
    allocations and L{OLDER_THRESHOLDS} for the others; C{0} leaves them as
    they are.

    @param collector: the C{gc} module (a test passes its own).
    @return: the thresholds in force.
    """
    if threshold:
        collector.set_threshold(threshold, *OLDER_THRESHOLDS)
    return tuple(collector.get_threshold())


_frozen = False


def freezeStartupObjects(collector=gc) -> bool:
    """
    Once per process: collect what starting left behind, then move every
    object alive to the collector's permanent generation (C{gc.freeze}), so
    no collection walks them again.  Objects made later are collected as
    before.

    @return: whether this call froze them (C{False} if one already had).
    """
    global _frozen
    if _frozen:
        return False
    _frozen = True
    collector.collect()
    collector.freeze()
    return True


def prepareForServing(threshold: int | None, collector=gc) -> None:
    """
    What a service does to the collector when it starts serving: freeze
    start-up's objects and, unless C{threshold} is L{None} (a site built by
    a test), set the thresholds and log the ones in force.
    """
    freezeStartupObjects(collector)
    if threshold is None:
        return
    young, middle, old = tuneCollector(threshold, collector)[:3]
    log.info(
        "garbage collector: young collections every {young} allocations, the"
        " middle generation every {middle} of those, the old every {old} middle"
        " ones; {frozen} objects of start-up frozen",
        event="gc_thresholds",
        young=young,
        middle=middle,
        old=old,
        frozen=collector.get_freeze_count(),
    )
