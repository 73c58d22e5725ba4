"""
Cancellation accounting on its own: counters before and after, replicas
that come and go, requests still in flight at the end.
"""

from webstack_load.accounting import Accounting, snapshotOf


def stats(replica, pid, **endpoints):
    full = {}
    for name, counts in endpoints.items():
        full[name] = {"started": 0, "completed": 0, "cancelled": 0, "wasted": 0, "in_flight": 0, **counts}
    return {"replica": replica, "pid": pid, "endpoints": full}


def test_everyAbortObserved():
    before = snapshotOf([stats("a", 1, interruptible={"cancelled": 5, "started": 5})])
    after = snapshotOf([stats("a", 1, interruptible={"cancelled": 15, "started": 15})])
    books = Accounting(10, before, after)
    assert (books.observed, books.ratio, books.unaccounted, books.completedAfterAbort) == (10, 1.0, 0, 0)


def test_abortsAcrossReplicasAndEndpointsAddUp():
    before = snapshotOf([stats("a", 1, interruptible={"cancelled": 2}), stats("b", 2)])
    after = snapshotOf([
        stats("a", 1, interruptible={"cancelled": 6}, stream={"cancelled": 1}),
        stats("b", 2, interruptible={"cancelled": 3}, logged={"cancelled": 2}),
    ])
    assert Accounting(10, before, after).observed == 4 + 1 + 3 + 2


def test_aReplicaThatAppearedCountsFromZero():
    before = snapshotOf([stats("a", 1, interruptible={"cancelled": 7})])
    after = snapshotOf([stats("a", 1, interruptible={"cancelled": 7}), stats("c", 3, interruptible={"cancelled": 4})])
    books = Accounting(4, before, after)
    assert books.observed == 4 and books.lostReplicas == []


def test_aLostReplicaIsReported():
    before = snapshotOf([stats("a", 1), stats("b", 2)])
    after = snapshotOf([stats("a", 1)])
    assert Accounting(0, before, after).lostReplicas == ["b:2"]


def test_inFlightAtTheEndIsNotCountedAsLost():
    before = snapshotOf([stats("a", 1)])
    after = snapshotOf([stats("a", 1, interruptible={"cancelled": 8, "in_flight": 2})])
    books = Accounting(10, before, after)
    assert (books.observed, books.inFlightAtEnd, books.unaccounted) == (8, 2, 0)
    assert books.ratio == 0.8


def test_lostAbortsAndWorkDoneAfterAnAbortShow():
    before = snapshotOf([stats("a", 1)])
    after = snapshotOf([stats("a", 1, interruptible={"cancelled": 7, "completed": 1}, logged={"wasted": 1})])
    books = Accounting(10, before, after)
    assert books.unaccounted == 3
    assert books.completedAfterAbort == 2
    summary = books.summary()
    assert summary["aborts_sent"] == 10 and summary["cancellations_observed"] == 7


def test_noAbortsMeansNothingToExplain():
    snapshot = snapshotOf([stats("a", 1)])
    assert Accounting(0, snapshot, snapshot).ratio == 1.0
