"""Drift statistics, windows, the monitor, alerts, metrics and the report schema (no network)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from streamseg.drift import DriftConfig, DriftMonitor, DriftReport, Thresholds, parse_windows
from streamseg.drift.stats import (
    composition_shift,
    js_distance,
    psi,
    psi_on_reference_quantiles,
    quantile_from_histogram,
    share_above,
)
from streamseg.engine import Engine, build_segmenter
from streamseg.errors import ConfigError
from streamseg.features.keys import Keys
from streamseg.features.registry import MODEL_FEATURES
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.segmenting.model import SegmentModel
from streamseg.settings import Settings

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs/drift.v1.schema.json"
MIN = 60_000


def test_identical_distributions__show_no_shift() -> None:
    c = [120, 80, 300]
    assert psi(c, c) == 0.0 and composition_shift(c, c) == 0.0 and js_distance(c, c) < 1e-9


def test_js_distance__is_scipys_base_2_distance_and_bounded() -> None:
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < js_distance([3, 1], [1, 3]) < 1


def test_psi__grows_with_the_shift_and_stays_finite_when_a_bin_empties() -> None:
    small, large = psi([50, 50], [45, 55]), psi([50, 50], [10, 90])
    assert 0 < small < 0.1 < 0.2 < large
    assert np.isfinite(psi([100, 0], [0, 100]))


def test_composition_shift__is_the_share_that_would_have_to_move() -> None:
    assert composition_shift([100, 0], [0, 100]) == 1.0
    assert composition_shift([50, 50], [40, 60]) == pytest.approx(0.10)


def test_reference_decile_psi__ignores_a_shift_within_a_point_mass_but_sees_a_new_tail() -> None:
    ref = np.array([600] + [40] * 10 + [0] * 5, dtype=float)
    assert psi_on_reference_quantiles(ref, ref * 3) < 1e-4
    tail = ref.copy()
    tail[-5:] = 100
    assert psi_on_reference_quantiles(ref, tail) > 0.2


def test_histogram_quantile_and_share_above__agree() -> None:
    edges = np.linspace(0, 10, 11)
    counts = np.full(10, 10.0)
    q = quantile_from_histogram(counts, edges, 0.95)
    assert q == pytest.approx(9.5)
    assert share_above(counts, edges, q) == pytest.approx(0.05)


@pytest.mark.parametrize("spec, seconds", [("1m,15m", [60, 900]), ("30s", [30]), ("1d, 7d", [86400, 604800])])
def test_window_spec__parses(spec: str, seconds: list[int]) -> None:
    assert parse_windows(spec) == seconds


@pytest.mark.parametrize("spec", ["", "1m,90s", "0m", "5x", "1m;15m"])
def test_bad_window_spec__is_a_clear_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="drift window"):
        parse_windows(spec)
    with pytest.raises(ValidationError):
        Settings(drift_windows=spec)


def vectors(n: int, value: float = 0.0) -> list[dict[str, float]]:
    return [dict.fromkeys(MODEL_FEATURES, value) for _ in range(n)]


def monitor(**kw: object) -> DriftMonitor:
    cfg = DriftConfig(windows=(60, 180), clock="event", min_customers=20, worker="test", **kw)  # type: ignore[arg-type]
    return DriftMonitor(cfg, MODEL_FEATURES)


def feed(mon: DriftMonitor, minute: int, segs: list[int], prev: list[int | None] | None = None,
         dist: float = 1.0, value: float = 0.0) -> None:
    mon.observe([minute * MIN + 1000] * len(segs), vectors(len(segs), value), segs,
                [dist] * len(segs), prev or list(segs))


def test_stable_stream__reports_every_window_at_every_boundary_without_alerts() -> None:
    mon = monitor()
    for minute in range(8):
        feed(mon, minute, [0] * 30 + [1] * 30)
    reports = mon.close(9 * MIN, {0: {}, 1: {}}, 1, {0: "A", 1: "B"})
    # sliding: every window length reports at every minute once it and its reference are
    # full, up to one slot before the clock (minute 9 -> boundary 8)
    assert [(r.window, r.window_end[11:16]) for r in reports] == [
        ("1m", "00:02"), ("1m", "00:03"), ("1m", "00:04"), ("3m", "00:04"), ("1m", "00:05"),
        ("3m", "00:05"), ("1m", "00:06"), ("3m", "00:06"), ("1m", "00:07"), ("3m", "00:07"),
        ("1m", "00:08"), ("3m", "00:08")]
    assert all(not r.alerts for r in reports)
    assert all(r.composition_shift == 0 and r.psi == 0 for r in reports)
    assert mon.close(9 * MIN, {}, 1, {}) == []  # each boundary closes once


def test_segment_mix_change__raises_composition_and_psi_alerts_with_the_migrations() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 50 + [1] * 50)
    feed(mon, 1, [0] * 10 + [1] * 90, prev=[0] * 10 + [0] * 40 + [1] * 50)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {}) if r.window == "1m"]
    assert rep.composition_shift == pytest.approx(0.4)
    assert {a.alert for a in rep.alerts} >= {"composition_shift", "segment_psi"}
    assert [(m.from_segment, m.to_segment, m.customers) for m in rep.migrations] == [(0, 1, 40)]
    assert rep.migration_rate == pytest.approx(0.4)
    assert [s.share for s in rep.segments] == [0.1, 0.9]


def test_customers_far_from_every_centre__raise_the_emerging_segment_alert() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 100, dist=1.0)
    feed(mon, 1, [0] * 70 + [0] * 30, dist=1.0)
    mon.observe([MIN + 5000] * 30, vectors(30), [0] * 30, [9.0] * 30, [0] * 30)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {}) if r.window == "1m"]
    assert rep.emerging_share == pytest.approx(30 / 130, abs=0.05)
    assert "emerging_segment" in {a.alert for a in rep.alerts}


def test_input_drift__raises_the_feature_psi_alert_naming_the_features() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 100, value=0.0)
    feed(mon, 1, [0] * 100, value=0.9)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {}) if r.window == "1m"]
    alert = next(a for a in rep.alerts if a.alert == "feature_psi")
    assert set(rep.feature_psi) == set(MODEL_FEATURES) and alert.value > 0.2
    assert "discount_share" in alert.detail


def test_tenure_and_recency_growing_with_the_clock__are_reported_but_never_alert() -> None:
    mon = monitor()
    grown = dict.fromkeys(MODEL_FEATURES, 0.0) | {"tenure_days": 3.0, "days_since_last_activity": 2.0}
    feed(mon, 0, [0] * 100, value=0.0)
    mon.observe([MIN + 1000] * 100, [grown] * 100, [0] * 100, [1.0] * 100, [0] * 100)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {}) if r.window == "1m"]
    assert rep.feature_psi["tenure_days"] > 0.2 and rep.feature_psi["days_since_last_activity"] > 0.2
    assert set(rep.time_driven_features) == {"tenure_days", "days_since_last_activity"}
    assert rep.alerts == []


def active(mon: DriftMonitor, minute: int, customers: list[str], seg: int, times: int = 1) -> None:
    """``customers`` active in ``minute`` in segment ``seg``, each in ``times`` batches."""
    for _ in range(times):
        mon.observe([minute * MIN + 1000] * len(customers), vectors(len(customers)),
                    [seg] * len(customers), [1.0] * len(customers), [seg] * len(customers),
                    customers=customers)


def test_a_segment_going_silent__raises_population_shrink_naming_the_segment() -> None:
    mon = monitor()
    stay, leave = [f"s{i}" for i in range(60)], [f"l{i}" for i in range(40)]
    active(mon, 0, stay, 0)
    active(mon, 0, leave, 1)
    active(mon, 1, stay, 0, times=3)  # more batches per customer: not more customers
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {0: "Loyal", 1: "Window shoppers"})
              if r.window == "1m"]
    assert (rep.active_customers, rep.reference_active_customers) == (60, 100)
    assert rep.population_shrink == pytest.approx(0.4)
    (alert,) = [a for a in rep.alerts if a.alert == "population_shrink"]
    assert "40.0% fewer active customers" in alert.detail and "Window shoppers -40 (-100%)" in alert.detail


def test_more_batches_per_customer__is_no_population_change() -> None:
    mon = monitor()
    ids = [f"c{i}" for i in range(50)]
    active(mon, 0, ids, 0, times=4)
    active(mon, 1, ids, 0, times=1)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {}) if r.window == "1m"]
    assert rep.customers == 50 and rep.reference_customers == 200
    assert rep.population_shrink == 0.0 and rep.alerts == []


def test_composition_alert__names_the_segments_whose_share_moved() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 50 + [1] * 50)
    feed(mon, 1, [0] * 10 + [1] * 90)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {0: "Loyal", 1: "Bargain"}) if r.window == "1m"]
    (alert,) = [a for a in rep.alerts if a.alert == "composition_shift"]
    assert "40.0% of customers" in alert.detail and "Loyal 50.0% -> 10.0%" in alert.detail


def test_centroid_shift__is_the_distance_a_centre_moved_between_closes() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 50)
    feed(mon, 1, [0] * 50)
    mon.close(2 * MIN, {0: {"tenure_days": 0.0}}, 1, {})  # boundary 1 closes: snapshot
    feed(mon, 2, [0] * 50)
    (rep,) = [r for r in mon.close(4 * MIN, {0: {"tenure_days": 3.0, "refund_rate": 4.0}}, 2, {})
              if r.window == "1m" and r.window_end.endswith("02:00.000Z")]
    assert rep.centroid_shift == {"0": pytest.approx(5.0)}
    assert (rep.reference_model_version, rep.model_version) == (1, 2)


# -- model changes ---------------------------------------------------------------------
# Two models over the same customers: v1 puts a discount_share of 0.5 in segment 0, v2
# (after a re-fit moved the boundary) in segment 1. Customers at 0.2 are segment 0 and
# customers at 0.8 segment 1 under both.
def two_models(first: tuple[float, float], then: tuple[float, float]) -> tuple[SegmentModel, SegmentModel]:
    """v1 with two centres at discount_share ``first`` (0 elsewhere), v2 re-fitted to ``then``."""
    feats = list(MODEL_FEATURES)
    col, d = feats.index("discount_share"), len(feats)

    def centres(a: float, b: float) -> np.ndarray:
        c = np.zeros((2, d))
        c[0, col], c[1, col] = a, b
        return c

    v1 = SegmentModel.first(feats, np.zeros(d), np.ones(d), centres(*first), np.ones(2))
    v2, events = v1.evolve(np.zeros(d), np.ones(d), centres(*then), np.ones(2), max_move=1.0)
    assert v2.version == 2 and v2.ids == [0, 1] and not events
    return v1, v2


def refit_models() -> tuple[SegmentModel, SegmentModel]:
    return two_models((0.2, 0.9), (0.1, 0.8))


def feed_model(mon: DriftMonitor, minute: int, model: SegmentModel, values: list[float],
               prev: list[int | None] | None = None) -> None:
    xs = [dict.fromkeys(MODEL_FEATURES, 0.0) | {"discount_share": v} for v in values]
    ids, dists, _ = model.assign(xs, [None] * len(xs))
    mon.observe([minute * MIN + 1000] * len(xs), xs, ids, dists, prev or list(ids),
                model_version=model.version)


def test_refit_moving_customers__is_not_read_as_drift_when_the_windows_are_rescored() -> None:
    v1, v2 = refit_models()
    same = [0.2] * 40 + [0.5] * 30 + [0.8] * 30  # the same population every minute
    mon = monitor()
    feed_model(mon, 0, v1, same)
    feed_model(mon, 1, v2, same)  # the 0.5s moved 0 -> 1: the definitions changed, not them
    (rep,) = [r for r in mon.close(3 * MIN, v2.centers_by_id(), 2, {}, rescore=v2.nearest)
              if r.window == "1m"]
    assert (rep.reference_model_versions, rep.model_versions) == ([1], [2])
    assert rep.segment_basis == "rescored"
    assert rep.composition_shift == 0.0 and rep.psi == 0.0
    assert rep.emerging_share == pytest.approx(rep.reference_emerging_share)  # same distances
    assert rep.alerts == []
    assert "v1, v2" in rep.segment_note and "0.300" in rep.segment_note  # what it would have shown
    assert [(s.segment_id, s.customers, s.reference_share) for s in rep.segments] == [
        (0, 40, 0.4), (1, 60, 0.6)]  # both windows as v2 reads them


def test_refit_moving_customers__would_alert_on_the_assignments_as_made() -> None:
    """The behaviour the re-scoring replaces: the mix as assigned moved by 30%."""
    v1, v2 = refit_models()
    same = [0.2] * 40 + [0.5] * 30 + [0.8] * 30
    mon = monitor()
    feed_model(mon, 0, v1, same)
    feed_model(mon, 1, v2, same)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 2, {}) if r.window == "1m"]  # no rescore
    assert rep.segment_basis == "held" and rep.composition_shift == pytest.approx(0.3)
    assert rep.alerts == []  # held: not evaluated, and the report says why
    assert "could not be re-scored" in rep.segment_note


def test_real_change_across_a_model_change__still_alerts_rescored() -> None:
    v1, v2 = refit_models()
    mon = monitor()
    feed_model(mon, 0, v1, [0.2] * 60 + [0.8] * 40)
    feed_model(mon, 1, v2, [0.2] * 20 + [0.8] * 80)  # 40% of the customers really moved
    (rep,) = [r for r in mon.close(3 * MIN, {}, 2, {}, rescore=v2.nearest) if r.window == "1m"]
    assert rep.segment_basis == "rescored"
    assert rep.composition_shift == pytest.approx(0.4)
    assert {a.alert for a in rep.alerts} >= {"composition_shift", "segment_psi", "feature_psi"}


def test_held_segment_comparison__keeps_feature_psi_alerting() -> None:
    v1, v2 = refit_models()
    mon = monitor()
    feed_model(mon, 0, v1, [0.2] * 100)
    feed_model(mon, 1, v2, [0.8] * 100)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 2, {}) if r.window == "1m"]
    assert rep.segment_basis == "held" and rep.composition_shift == 1.0
    assert [a.alert for a in rep.alerts] == ["feature_psi"]


def test_one_model_version__compares_the_assignments_as_made() -> None:
    v1, _ = refit_models()
    mon = monitor()
    feed_model(mon, 0, v1, [0.2] * 50 + [0.8] * 50)
    feed_model(mon, 1, v1, [0.2] * 50 + [0.8] * 50)
    (rep,) = [r for r in mon.close(3 * MIN, {}, 1, {}, rescore=v1.nearest) if r.window == "1m"]
    assert (rep.segment_basis, rep.segment_note) == ("assigned", "")
    assert rep.model_versions == rep.reference_model_versions == [1]


def test_rescored_mix__is_estimated_from_a_bounded_sample_weighted_to_the_slot() -> None:
    v1, v2 = refit_models()
    mon = monitor(sample_per_slot=200)
    rng = np.random.default_rng(3)
    for minute, model in ((0, v1), (1, v2)):
        values = rng.permutation([0.2] * 1400 + [0.8] * 600).tolist()
        for part in range(0, 2000, 250):  # batches, as the engine observes them
            feed_model(mon, minute, model, values[part:part + 250])
    assert all(len(s.sample) == 200 for s in mon.slots.values())
    (rep,) = [r for r in mon.close(3 * MIN, {}, 2, {}, rescore=v2.nearest) if r.window == "1m"]
    assert rep.segment_basis == "rescored"
    assert sum(s.customers for s in rep.segments) == pytest.approx(2000, abs=1)
    assert [s.segment_id for s in rep.segments] == [0, 1]
    assert rep.segments[1].share == pytest.approx(0.3, abs=0.08)
    assert rep.segments[1].reference_share == pytest.approx(0.3, abs=0.08)
    assert rep.composition_shift < 0.15 and rep.alerts == []


def test_too_few_customers__no_report() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 5)
    feed(mon, 1, [1] * 5)
    assert mon.close(10 * MIN, {}, 1, {}) == []


def test_updates_for_a_closed_slot__are_dropped_as_late() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 50)
    feed(mon, 1, [0] * 50)
    first = mon.close(3 * MIN, {}, 1, {})
    feed(mon, 0, [1] * 50)  # far behind the clock
    feed(mon, 2, [0] * 50)
    later = mon.close(4 * MIN, {}, 1, {})
    assert first and later and all(not r.alerts for r in later)


def test_closing__gives_closes_reports_one_window_at_a_time() -> None:
    whole, stepped = monitor(), monitor()
    for mon in (whole, stepped):
        for minute in range(8):
            feed(mon, minute, [0] * 30 + [1] * 30)
    steps = list(stepped.closing(9 * MIN, {0: {}, 1: {}}, 1, {0: "A", 1: "B"}))
    assert all(len(step) <= 1 for step in steps) and len(steps) == 8 * 2  # boundaries 1..8, 2 windows
    def same(r: DriftReport) -> dict[str, Any]:
        return r.model_dump(exclude={"generated_at"})

    assert [same(r) for step in steps for r in step] == [
        same(r) for r in whole.close(9 * MIN, {0: {}, 1: {}}, 1, {0: "A", 1: "B"})]
    assert stepped.next_boundary == whole.next_boundary == 9
    assert list(stepped.closing(9 * MIN, {}, 1, {})) == []


def test_batch_between_steps__counts_in_the_open_and_last_closed_slots_not_older() -> None:
    mon = monitor()
    for minute in range(5):
        feed(mon, minute, [0] * 30)
    steps = mon.closing(6 * MIN, {0: {}}, 1, {})  # boundaries 1..5 (1 has no reference yet)
    first = [r for _ in range(4) for r in next(steps)]  # boundaries 1 and 2, both windows
    assert [r.window_end[11:16] for r in first] == ["00:02"]
    feed(mon, 0, [0] * 25)  # before the last closed slot: too late, dropped
    feed(mon, 3, [0] * 25)  # still open
    rest = [r for step in steps for r in step]
    by_end = {(r.window, r.window_end[11:16]): r.customers for r in rest}
    assert by_end[("1m", "00:04")] == 55  # minute 3's slot, with the rows sent between steps
    assert by_end[("1m", "00:03")] == 30  # minute 2's
    assert by_end[("3m", "00:05")] == 30 + 55 + 30  # minutes 2-4
    (three,) = [r for r in rest if r.window == "3m" and r.window_end[11:16] == "00:05"]
    assert three.reference_customers == 30 + 30  # minutes 0-1: the late rows for minute 0 dropped


def test_rescored_sample_kept_between_steps__is_computed_again_when_rows_came_in() -> None:
    v1, v2 = refit_models()
    mon = monitor()
    feed_model(mon, 0, v1, [0.2] * 30)
    feed_model(mon, 1, v2, [0.2] * 30)
    feed_model(mon, 2, v1, [0.2] * 30)  # boundary 3 compares minutes 1 and 2: re-scored too
    steps = mon.closing(4 * MIN, v2.centers_by_id(), 2, {}, rescore=v2.nearest)  # boundaries 1..3
    assert next(steps) == next(steps) == []  # boundary 1: no reference window yet
    (b2,) = next(steps)  # 1m ending 00:02: minute 1 re-scored as the current window
    feed_model(mon, 1, v2, [0.8] * 30)  # the last closed slot still takes late rows
    (b3,) = [r for step in steps for r in step if r.window == "1m"]  # minute 1 is its reference
    assert b2.segment_basis == b3.segment_basis == "rescored"
    assert b3.reference_customers == 60
    assert sorted((s.segment_id, round(s.reference_share, 2)) for s in b3.segments) == [(0, 0.5), (1, 0.5)]


def test_batch_between_steps__into_slots_no_window_read_yet__keeps_the_samples_re_scored() -> None:
    def run(between: bool) -> int:
        v1, v2 = refit_models()
        rows = [0]

        def counted(x: Any, names: Any) -> Any:
            rows[0] += len(x)
            return v2.nearest(x, names)

        mon = monitor()
        for minute, model in ((0, v1), (1, v2), (2, v1)):
            feed_model(mon, minute, model, [0.2] * 30)
        steps = mon.closing(4 * MIN, v2.centers_by_id(), 2, {}, rescore=counted)  # boundaries 1..3
        for _ in range(3):
            next(steps)
        if between:
            feed_model(mon, 3, v2, [0.8] * 30)  # minute 3: in no window of these boundaries
        assert [r for step in steps for r in step]
        return rows[0]

    assert run(between=True) == run(between=False)


async def test_worker_timer_close__lets_batches_run_between_two_reports() -> None:
    e = Engine(Settings(drift_windows="1m,3m"), RedisFeatureStore.from_url(
        "redis://127.0.0.1:1/0", Keys("drift"), dedup_horizon_days=30, retention_days=30),
        build_segmenter(Settings()), publisher=None, metrics=Metrics(CollectorRegistry()))  # type: ignore[arg-type]
    e.drift = monitor()
    for minute in range(8):
        feed(e.drift, minute, [0] * 30 + [1] * 30)
    v1, _ = refit_models()
    e.assigner.model = v1
    e.clock.drift_ms = lambda: 9 * MIN  # type: ignore[method-assign]
    log: list[str] = []
    closing = e.drift.closing

    def logged(*a: Any, **kw: Any) -> Iterator[list[DriftReport]]:
        for step in closing(*a, **kw):
            log.append("report")
            yield step

    e.drift.closing = logged  # type: ignore[method-assign]

    async def batches() -> None:  # a task that wants the loop at every turn
        while True:
            log.append("batch")
            await asyncio.sleep(0)

    other = asyncio.create_task(batches())
    await asyncio.sleep(0)
    reports = await e.drift_reports_paced()
    other.cancel()
    assert len(reports) == 12 and log.count("report") == 16
    between = "".join("r" if x == "report" else "b" for x in log).strip("b")
    assert "rr" not in between, between  # a batch's turn between any two reports
    assert e.metrics.registry.get_sample_value("streamseg_drift_reports_total", {"window": "1m"}) == 7


def test_thresholds__come_from_settings() -> None:
    cfg = DriftConfig.from_settings(Settings(drift_psi_alert=0.3, drift_windows="5m,10m"))
    assert cfg.windows == (300, 600) and cfg.thresholds == Thresholds(segment_psi=0.3)


def test_report__is_exposed_as_metrics_and_stale_series_go() -> None:
    m = Metrics(CollectorRegistry())
    mon = monitor()
    feed(mon, 0, [0] * 50 + [1] * 50)
    feed(mon, 1, [0] * 10 + [1] * 90, prev=[0] * 50 + [1] * 50)
    feed(mon, 2, [0] * 50 + [1] * 50)
    reps = [r for r in mon.close(4 * MIN, {}, 1, {}) if r.window == "1m"]
    m.drift.record(reps[0])
    get = m.registry.get_sample_value
    assert get("streamseg_drift_composition_shift", {"window": "1m"}) == reps[0].composition_shift
    assert get("streamseg_drift_alert", {"window": "1m", "alert": "composition_shift"}) == 1.0
    assert get("streamseg_drift_migrations", {"window": "1m", "from_segment": "0", "to_segment": "1"}) == 40
    m.drift.record(reps[1])  # window 2: the 0 -> 1 migrations are gone from the latest window
    assert get("streamseg_drift_migrations", {"window": "1m", "from_segment": "0", "to_segment": "1"}) is None
    m.drift.set_thresholds(Thresholds())
    assert get("streamseg_drift_threshold", {"alert": "segment_psi"}) == 0.2


def test_report_json__round_trips_and_matches_the_documented_schema() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 50)
    feed(mon, 1, [1] * 50, prev=[0] * 50)
    rep = mon.close(3 * MIN, {}, 1, {})[0]
    raw = json.loads(rep.to_bytes())
    assert raw["schema"] == "streamseg.drift.v1"
    assert DriftReport.model_validate(raw) == rep
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(raw, schema)
    assert schema == DriftReport.model_json_schema(by_alias=True), (
        "docs/drift.v1.schema.json is stale: python -m streamseg.drift.report > docs/drift.v1.schema.json")


def test_refit_absorbing_a_shrink__is_read_with_the_reference_windows_model() -> None:
    """A re-fit that follows a change can hide it: after half of segment 1's customers
    left and others drifted towards it, v2's centres (0.0, 0.45) split both windows
    alike. Read with v1, the segments the reference window had, the mix moved by 40%."""
    v1, v2 = two_models((0.2, 0.9), (0.0, 0.45))
    mon = monitor()
    feed_model(mon, 0, v1, [0.15] * 50 + [0.6] * 50)
    assert mon.close(2 * MIN, v1.centers_by_id(), 1, {}, rescore=v1.nearest) == []  # v1 snapshot
    feed_model(mon, 1, v2, [0.15] * 50 + [0.6] * 10 + [0.35] * 40)
    (rep,) = [r for r in mon.close(3 * MIN, v2.centers_by_id(), 2, {}, rescore=v2.nearest)
              if r.window == "1m"]
    assert rep.segment_basis == "rescored"
    assert rep.composition_shift == pytest.approx(0.4)
    assert "composition_shift" in {a.alert for a in rep.alerts}
    assert "re-scored with v1 (the reference window's model; with the current v2 the shift is 0.000)" \
        in rep.segment_note
