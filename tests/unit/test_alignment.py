"""EventTimeAligner: what an input partition behind in event time holds back (streamseg/alignment.py)."""

from __future__ import annotations

from streamseg.alignment import EventTimeAligner


def aligner(**kw: object) -> EventTimeAligner:
    return EventTimeAligner(lambda r: r, lambda tp: tp != "other", **kw)  # type: ignore[arg-type]


def test_release__keeps_each_partitions_own_order_even_past_a_late_record() -> None:
    a = aligner()
    a.add({"clicks": [1, 8, 3, 4], "orders": [5]})
    # clicks reached 8, orders 5: the 8 waits, and the late 3 and 4 behind it wait with it
    assert a.release(waiting={"clicks", "orders"}) == {"clicks": [1], "orders": [5]}
    a.add({"orders": [9]})
    assert a.release(waiting={"clicks", "orders"}) == {"clicks": [8, 3, 4]}
    assert a.held == 1


def test_release__a_partition_waiting_that_was_never_fetched_holds_every_other() -> None:
    a = aligner()
    a.add({"clicks": [1, 2]})
    assert a.release(waiting={"clicks", "orders"}) == {}
    assert a.held == 2
    a.add({"orders": [1]})
    assert a.release(waiting={"clicks", "orders"}) == {"clicks": [1], "orders": [1]}


def test_release__partitions_of_other_topics_pass_straight_through() -> None:
    a = aligner()
    a.add({"clicks": [10], "orders": [1], "other": [50, 60]})
    assert a.release(waiting={"clicks", "orders", "other"}) == {"orders": [1], "other": [50, 60]}


def test_release__everything_once_fetches_waited_max_hold_without_a_release() -> None:
    a = aligner(max_hold_s=5.0)
    a.add({"clicks": [1, 2], "orders": [3]})
    waiting = {"clicks", "orders", "ghost"}  # "ghost" says it has records and sends none
    assert a.release(waiting, waited_s=1.0) == {}
    assert a.release(waiting, waited_s=3.9) == {}
    assert a.release(waiting, waited_s=0.1) == {"clicks": [1, 2], "orders": [3]}
    assert a.held == 0


def test_release__the_wait_counts_from_the_last_release() -> None:
    a = aligner(max_hold_s=5.0)
    a.add({"clicks": [1], "orders": [3]})
    assert a.release({"clicks", "orders"}, waited_s=4.0) == {"clicks": [1]}
    assert a.release({"clicks", "orders"}, waited_s=4.0) == {}  # 4 s since that release
    assert a.release({"clicks", "orders"}, waited_s=1.0) == {"orders": [3]}


def test_release__time_not_spent_waiting_for_input_does_not_count() -> None:
    a = aligner(max_hold_s=5.0)
    a.add({"clicks": [1], "orders": [3]})
    a.release({"clicks", "orders"})
    # the worker was busy for minutes with a batch: the fetches after it did not wait
    for _ in range(100):
        assert a.release({"clicks", "orders"}, waited_s=0.0) == {}
    assert a.held == 1


def test_crowded__partitions_holding_more_than_the_bound() -> None:
    a = aligner(hold_per_partition=3)
    a.add({"clicks": [1], "orders": [5, 6, 7, 8]})
    a.release(waiting={"clicks", "orders"})
    assert a.crowded() == {"orders"}
    a.add({"clicks": [6]})
    a.release(waiting={"clicks", "orders"})
    assert a.crowded() == set()  # 7 and 8 left


def test_clear__forgets_what_is_held_and_how_far_partitions_got() -> None:
    a = aligner()
    a.add({"clicks": [1], "orders": [5]})
    a.release(waiting={"clicks", "orders"})
    a.clear()
    assert a.held == 0
    a.add({"orders": [5]})
    assert a.release(waiting={"clicks", "orders"}) == {}  # clicks: nothing fetched since
