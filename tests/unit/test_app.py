"""The worker app: timers registered by their domains, one failure idiom, no process-wide tuning."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from typing import Any

import faust
import pytest
from prometheus_client import CollectorRegistry, Counter

from streamseg.app import create_app
from streamseg.settings import Settings
from streamseg.ticks import Ticks
from streamseg.tuning import GC_YOUNG_THRESHOLD, GIL_SWITCH_INTERVAL_S, tune_process


def failing(exc: BaseException) -> Ticks:
    """Ticks whose ``refused`` treats ``exc`` as the cluster refusing the worker."""
    failures = Counter("failures", "", ["timer"], registry=CollectorRegistry())
    return Ticks(failures, refused=lambda e: e is exc)


def test_failed_tick__is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    ticks = failing(PermissionError())

    async def tick() -> None:
        raise OSError("Redis is away")

    with caplog.at_level(logging.DEBUG, logger="streamseg.ticks"):
        ok = asyncio.run(ticks.attempt("reading sizes", tick, timer="sizes", level=logging.DEBUG))
    assert ok is False
    assert ticks.failures.labels("sizes")._value.get() == 1.0
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "reading sizes failed: OSError('Redis is away')")]


def test_refused_tick__goes_to_the_access_guard_uncounted(caplog: pytest.LogCaptureFixture) -> None:
    refusal = PermissionError("denied")
    ticks = failing(refusal)

    async def tick() -> None:
        raise refusal

    with caplog.at_level(logging.DEBUG, logger="streamseg.ticks"):
        assert asyncio.run(ticks.attempt("merging", tick, timer="merge")) is False
    assert ticks.failures.labels("merge")._value.get() == 0.0
    assert caplog.records == []


def test_worker_app__registers_every_timer_with_its_settings_period(
        monkeypatch: pytest.MonkeyPatch) -> None:
    registered: dict[str, tuple[float, bool]] = {}
    timer = faust.App.timer

    def spy(app: faust.App, interval: float, on_leader: bool = False, **kw: Any) -> Any:
        def inner(fun: Any) -> Any:
            registered[fun.__name__] = (interval, on_leader)
            return timer(app, interval, on_leader=on_leader, **kw)(fun)
        return inner

    monkeypatch.setattr(faust.App, "timer", spy)
    create_app(Settings(web_port=6999, sample_process=False, model_sync_s=3.0,
                        held_back_every_s=0.5, profiles_every_s=7.0, catalog_refresh_s=11.0,
                        segment_sizes_every_s=1.5, worker_status_every_s=2.5,
                        consumer_lag_every_s=4.0, rescore_every_s=9.0, drift_interval_s=6.0))
    assert registered == {
        "publish_local_model": (3.0, False), "merge_models": (3.0, True),
        "end_history": (3.0, False),
        "refresh_catalog": (11.0, True), "assign_held_back": (0.5, False),
        "load_profiles": (7.0, False), "rescore_stale_customers": (9.0, True),
        "close_drift_windows": (6.0, False), "refresh_segment_sizes": (1.5, False),
        "share_worker_status": (2.5, False), "refresh_consumer_lag": (4.0, False)}


def test_create_app__leaves_the_process_alone_and_tune_process_tunes_it() -> None:
    before, gc_before = sys.getswitchinterval(), gc.get_threshold()
    try:
        worker = create_app(Settings(web_port=6999, sample_process=False, web_in_thread=True))
        assert sys.getswitchinterval() == before
        assert gc.get_threshold() == gc_before
        tune_process(worker.app, worker.engine.settings)
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *gc_before[1:])
    finally:
        sys.setswitchinterval(before)
        gc.set_threshold(*gc_before)
