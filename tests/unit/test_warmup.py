"""The rule that seeds a small stream's first model early, and the "warming up: N of M" it reports."""

from __future__ import annotations

from streamseg.devstack.dev import Snapshot, render
from streamseg.segmenting.warmup import WarmUp, progress, warming_up
from streamseg.settings import Settings

T0 = 1_800_000_000_000.0


def started(customers: int, *, needed: int = 60, after_s: float = 30.0) -> WarmUp:
    w = WarmUp(needed=needed, after_ms=after_s * 1000)
    w.begin(T0)
    w.customers = customers
    return w


def test_needs__n_segments_times_the_per_segment_minimum_and_the_settings_bound() -> None:
    w = WarmUp.from_settings(Settings(n_segments=6, model_warmup_per_segment=10, model_warmup_s=45))
    assert (w.needed, w.after_ms) == (60, 45_000.0)


def test_defaults__a_60_customer_stream_with_6_segments_is_seeded_within_a_minute() -> None:
    w = WarmUp.from_settings(Settings(n_segments=6))
    w.begin(T0)
    w.customers = 60
    assert w.due(T0 + 60_000 - 10_000)  # with time to spare for a model sync and assignment


def test_enough_customers__is_not_due_before_the_bounded_time() -> None:
    w = started(60)
    assert not w.due(T0 + 29_999)
    assert w.due(T0 + 30_000)


def test_too_few_distinct_customers__is_never_due_however_long_it_waits() -> None:
    assert not started(59).due(T0 + 10 * 3_600_000)


def test_before_any_event__is_not_due() -> None:
    w = WarmUp(needed=60, after_ms=0.0)
    w.customers = 100
    assert not w.due(T0)


def test_the_bounded_time__runs_from_the_first_event_not_the_latest() -> None:
    w = started(60)
    w.begin(T0 + 25_000)  # later events do not restart the wait
    assert w.due(T0 + 30_000)


def test_progress__says_n_of_m_distinct_customers_then_that_the_model_follows() -> None:
    assert progress(12, 60, 30.0) == ("warming up: 12 of 60 customers seen "
                                      "(the first model needs 60 distinct customers)")
    assert progress(90, 60, 30.0).startswith("warming up: 60 of 60 customers seen")
    assert "within 30 s of the first event" in progress(90, 60, 30.0)


def test_status__round_trips_through_what_the_api_reads() -> None:
    w = started(12)
    statuses = {"w1": {"model_version": 0, **w.status()},
                "w2": {"model_version": 0, **started(14).status()}}  # each read the shared count
    assert warming_up(statuses) == progress(14, 60, 30.0) == started(14).text()


def test_warming_up__is_none_once_any_worker_has_a_model_or_none_reported() -> None:
    assert warming_up({"w1": {"model_version": 0, **started(12).status()},
                       "w2": {"model_version": 2}}) is None
    assert warming_up({}) is None
    assert warming_up({"old": {"model_version": 0, "clock_ms": 1.0}}) is None  # a status without it


def test_dev_view__shows_the_warm_up_line_until_there_is_a_model() -> None:
    text = progress(12, 60, 30.0)
    view = render(Snapshot(at=0.0), 0.0, (float("nan"), 0), 5.0, False, warming=text)
    assert text in view.splitlines()
    modelled = render(Snapshot(at=0.0, model_version=1.0), 0.0, (float("nan"), 0), 5.0, False,
                      warming=text)
    assert "warming up" not in modelled
