"""The migration forecast: transition matrix, Markov steps with inflow, the report and metrics."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamseg.drift import DriftConfig, DriftMonitor
from streamseg.drift.evaluate import forecast_errors
from streamseg.drift.forecast import forecast, mean_abs_error, transitions
from streamseg.features.registry import MODEL_FEATURES
from streamseg.metrics import Metrics

MIN = 60_000


def test_transitions__stayers_on_the_diagonal_moves_off_it_rows_sum_to_one() -> None:
    # segment 1 holds 50 updates: 10 moved in from 0, 15 first assignments, so 25 stayed
    p = transitions([0, 1, 2], {0: 90, 1: 50, 2: 0}, {(0, 1): 10}, {1: 15})
    assert p[0].tolist() == pytest.approx([0.9, 0.1, 0.0])  # 90 stayed, 10 left for 1
    assert p[1].tolist() == [0.0, 1.0, 0.0]
    assert p[2].tolist() == [0.0, 0.0, 1.0]  # nothing observed: its customers stay
    assert p.sum(1) == pytest.approx(np.ones(3))


def test_forecast__without_moves_or_entries_is_no_change() -> None:
    one, two = forecast([0, 1], {0: 30, 1: 70}, {}, {})
    assert one.tolist() == pytest.approx([0.3, 0.7]) and two.tolist() == pytest.approx([0.3, 0.7])


def test_forecast__a_steady_flow_keeps_moving_shares_and_keeps_their_sum() -> None:
    one, two = forecast([0, 1, 2], {0: 60, 1: 30, 2: 10}, {(0, 1): 12, (1, 2): 3}, {})
    assert one.sum() == pytest.approx(1.0) and two.sum() == pytest.approx(1.0)
    assert one[0] < 0.6 and two[0] < one[0]  # 0 keeps losing customers
    assert two[2] > one[2] > 0.1  # and 2 keeps gaining them


def test_forecast__customers_entering_arrive_at_the_windows_rate_and_mix() -> None:
    """A fifth of the updates are first assignments, all to segment 1: it keeps growing."""
    one, two = forecast([0, 1], {0: 50, 1: 50}, {}, {1: 20})
    assert one.tolist() == pytest.approx([0.8 * 0.5, 0.8 * 0.5 + 0.2])
    assert two.tolist() == pytest.approx([0.8 * 0.4, 0.8 * 0.6 + 0.2])


def test_forecast__steps_from_given_shares_with_the_windows_matrix() -> None:
    """Re-scored windows: the shares as reported, the matrix from the assignments as made."""
    (one,) = forecast([0, 1], {0: 50, 1: 50}, {(0, 1): 10}, {}, start=[0.9, 0.1], horizons=1)
    assert one.tolist() == pytest.approx([0.9 * 50 / 60, 0.9 * 10 / 60 + 0.1])


def test_mean_abs_error__in_share_points_over_every_segment_of_either() -> None:
    assert mean_abs_error({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}) == 0.0
    assert mean_abs_error({0: 1.0}, {1: 1.0}) == 100.0


def _markov_stream(mon: DriftMonitor, minutes: int, rng: np.random.Generator) -> None:
    """300 customers; each minute a tenth of segment 0's members move to 1, a twentieth
    of 1's to 2 (every customer updates once a minute)."""
    seg = np.zeros(300, dtype=int)
    seg[200:] = 1
    for minute in range(minutes):
        prev = seg.copy()
        u = rng.random(300)
        seg = np.where((prev == 0) & (u < 0.1), 1, np.where((prev == 1) & (u < 0.05), 2, prev))
        mon.observe([minute * MIN + 1000] * 300, [dict.fromkeys(MODEL_FEATURES, 0.0)] * 300,
                    seg.tolist(), [1.0] * 300, prev.tolist())


def test_report__forecasts_every_segment_and_beats_no_change_on_a_steady_flow() -> None:
    mon = DriftMonitor(DriftConfig(windows=(60,), clock="event", min_customers=20, worker="t"),
                       MODEL_FEATURES)
    _markov_stream(mon, 12, np.random.default_rng(0))
    reports = mon.close(13 * MIN, {}, 1, {})
    assert len(reports) == 11
    for r in reports:
        assert [f.segment_id for f in r.forecast] == [s.segment_id for s in r.segments]
        assert sum(f.one_window_ahead for f in r.forecast) == pytest.approx(1.0)
    errors = forecast_errors(reports)
    assert errors["pairs"] == 10
    assert errors["markov_1"] < errors["no_change_1"] / 2
    assert errors["markov_2"] < errors["no_change_2"] / 2


def test_report_forecast__is_exposed_as_metrics_per_horizon() -> None:
    m = Metrics(CollectorRegistry())
    mon = DriftMonitor(DriftConfig(windows=(60,), clock="event", min_customers=20, worker="t"),
                       MODEL_FEATURES)
    _markov_stream(mon, 3, np.random.default_rng(1))
    rep = mon.close(4 * MIN, {}, 1, {})[-1]
    m.drift.record(rep)
    get = m.registry.get_sample_value
    for f in rep.forecast:
        labels = {"window": "1m", "segment": str(f.segment_id)}
        assert get("streamseg_drift_forecast_share", {**labels, "horizon": "1"}) == f.one_window_ahead
        assert get("streamseg_drift_forecast_share", {**labels, "horizon": "2"}) == f.two_windows_ahead
    assert get("streamseg_drift_segment_share", {"window": "1m", "segment": "0"}) == rep.segments[0].share
