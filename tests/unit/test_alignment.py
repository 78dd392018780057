"""EventTimeAligner: what an input partition behind in event time holds back (streamseg/alignment.py)."""

from __future__ import annotations

from streamseg.alignment import EventTimeAligner


def aligner(**kw: object) -> tuple[EventTimeAligner, list[float]]:
    now = [0.0]
    a = EventTimeAligner(lambda r: r, lambda tp: tp != "other", clock=lambda: now[0], **kw)  # type: ignore[arg-type]
    return a, now


def test_release__keeps_each_partitions_own_order_even_past_a_late_record() -> None:
    a, _ = aligner()
    a.add({"clicks": [1, 8, 3, 4], "orders": [5]})
    # clicks reached 8, orders 5: the 8 waits, and the late 3 and 4 behind it wait with it
    assert a.release(waiting={"clicks", "orders"}) == {"clicks": [1], "orders": [5]}
    a.add({"orders": [9]})
    assert a.release(waiting={"clicks", "orders"}) == {"clicks": [8, 3, 4]}
    assert a.held == 1


def test_release__a_partition_waiting_that_was_never_fetched_holds_every_other() -> None:
    a, _ = aligner()
    a.add({"clicks": [1, 2]})
    assert a.release(waiting={"clicks", "orders"}) == {}
    assert a.held == 2
    a.add({"orders": [1]})
    assert a.release(waiting={"clicks", "orders"}) == {"clicks": [1], "orders": [1]}


def test_release__partitions_of_other_topics_pass_straight_through() -> None:
    a, _ = aligner()
    a.add({"clicks": [10], "orders": [1], "other": [50, 60]})
    assert a.release(waiting={"clicks", "orders", "other"}) == {"orders": [1], "other": [50, 60]}


def test_release__everything_after_max_hold_without_a_release() -> None:
    a, now = aligner(max_hold_s=5.0)
    a.add({"clicks": [1, 2], "orders": [3]})
    assert a.release(waiting={"clicks", "orders", "ghost"}) == {}  # "ghost" says it has records
    now[0] = 4.9
    assert a.release(waiting={"clicks", "orders", "ghost"}) == {}
    now[0] = 5.0
    assert a.release(waiting={"clicks", "orders", "ghost"}) == {"clicks": [1, 2], "orders": [3]}
    assert a.held == 0


def test_release__the_hold_counts_from_the_last_release() -> None:
    a, now = aligner(max_hold_s=5.0)
    a.add({"clicks": [1], "orders": [3]})
    now[0] = 4.0
    assert a.release(waiting={"clicks", "orders"}) == {"clicks": [1]}
    now[0] = 8.0  # 4 s after that release: still held
    assert a.release(waiting={"clicks", "orders"}) == {}
    now[0] = 9.0
    assert a.release(waiting={"clicks", "orders"}) == {"orders": [3]}


def test_crowded__partitions_holding_more_than_the_bound() -> None:
    a, _ = aligner(hold_per_partition=3)
    a.add({"clicks": [1], "orders": [5, 6, 7, 8]})
    a.release(waiting={"clicks", "orders"})
    assert a.crowded() == {"orders"}
    a.add({"clicks": [6]})
    a.release(waiting={"clicks", "orders"})
    assert a.crowded() == set()  # 7 and 8 left


def test_clear__forgets_what_is_held_and_how_far_partitions_got() -> None:
    a, _ = aligner()
    a.add({"clicks": [1], "orders": [5]})
    a.release(waiting={"clicks", "orders"})
    a.clear()
    assert a.held == 0
    a.add({"orders": [5]})
    assert a.release(waiting={"clicks", "orders"}) == {}  # clicks: nothing fetched since
