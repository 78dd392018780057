"""Churn risk in the drift report: per-segment levels, moves into the high-risk band, the
three value alerts and their metrics (no network; see streamseg/drift/risk.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamseg.drift import ALERT_NAMES, DriftConfig, DriftMonitor, DriftReport, Thresholds
from streamseg.drift.risk import Observation
from streamseg.features.registry import MODEL_FEATURES
from streamseg.metrics import Metrics
from streamseg.settings import Settings
from streamseg.value.params import ValueParams
from streamseg.value.scorer import ValueScorer
from tests.support import load_script

MIN = 60_000
NAMES = {0: "High-value loyalists", 1: "Window shoppers"}
VALUE_ALERTS = {"high_risk_share", "segment_churn_risk", "value_at_risk"}


def monitor() -> DriftMonitor:
    cfg = DriftConfig(windows=(60,), clock="event", min_customers=20, worker="test",
                      currency="EUR")
    return DriftMonitor(cfg, MODEL_FEATURES)


def feed(mon: DriftMonitor, minute: int, segs: list[int], risks: list[Observation | None]) -> None:
    n = len(segs)
    mon.observe([minute * MIN + 1000] * n, [dict.fromkeys(MODEL_FEATURES, 0.0)] * n, segs,
                [1.0] * n, list(segs))
    mon.observe_risk(minute * MIN + 2000, segs, risks)


def steady(rng: np.random.Generator, n: int, high_share: float) -> list[Observation | None]:
    """Customers whose risk and band stand still: ``high_share`` of them high all along."""
    out: list[Observation | None] = []
    for _ in range(n):
        if rng.random() < high_share:
            out.append((float(rng.uniform(0.8, 1.0)), "high", "high", float(rng.gamma(2, 50))))
        else:
            out.append((float(rng.uniform(0.0, 0.5)), "low", "low", float(rng.gamma(2, 50))))
    return out


def report(mon: DriftMonitor, minute: int) -> DriftReport:
    (rep,) = mon.close((minute + 2) * MIN, {}, 1, NAMES)
    return rep


def loyalists_slipping() -> DriftReport:
    """A steady minute, then 80 loyalists who spent 400 EUR each moved from low into the high band."""
    rng = np.random.default_rng(1)
    mon = monitor()
    feed(mon, 0, [0] * 200 + [1] * 200, steady(rng, 400, 0.1))
    moved: list[Observation | None] = [(0.9, "high", "low", 400.0)] * 80
    feed(mon, 1, [0] * 200 + [1] * 200, moved + steady(rng, 320, 0.1))
    return report(mon, 1)


def test_loyalists_slipping_into_high_risk__raise_all_three_value_alerts_naming_the_segment() -> None:
    rep = loyalists_slipping()
    assert {a.alert for a in rep.alerts} == VALUE_ALERTS
    assert rep.entered_high_risk == 80 and rep.left_high_risk == 0
    assert rep.high_risk_share is not None and rep.reference_high_risk_share is not None
    assert rep.high_risk_share - rep.reference_high_risk_share > 0.15
    loyal = next(s for s in rep.risk if s.segment_id == 0)
    assert (loyal.name, loyal.scored, loyal.entered_high_risk) == ("High-value loyalists", 200, 80)
    assert loyal.reference_mean_churn_risk is not None
    assert loyal.mean_churn_risk > loyal.reference_mean_churn_risk + 0.2
    shoppers = next(s for s in rep.risk if s.segment_id == 1)
    assert shoppers.entered_high_risk == 0
    by = {a.alert: a for a in rep.alerts}
    assert by["high_risk_share"].detail.startswith("customers at high risk of leaving rose from ")
    assert "80 moved into the high-risk band" in by["high_risk_share"].detail
    assert "rising most: High-value loyalists" in by["high_risk_share"].detail
    assert "High-value loyalists" in by["segment_churn_risk"].detail
    assert "Window shoppers" not in by["segment_churn_risk"].detail
    assert " EUR per customer seen" in by["value_at_risk"].detail


def test_steady_risk__raises_no_value_alert_in_any_of_many_windows() -> None:
    rng = np.random.default_rng(2)
    mon = monitor()
    for minute in range(40):
        feed(mon, minute, [0] * 150 + [1] * 150, steady(rng, 300, 0.2))
    reports = mon.close(42 * MIN, {}, 1, NAMES)
    assert len(reports) == 39
    assert [r.alerts for r in reports if {a.alert for a in r.alerts} & VALUE_ALERTS] == []
    assert all(r.high_risk_share is not None and abs(r.high_risk_share - 0.2) < 0.1
               for r in reports)


def test_small_rise_of_many_customers__stays_below_the_threshold() -> None:
    """A 3-point rise is beyond chance with 20,000 updates a window, but below the 5-point
    threshold: no alert."""
    mon = monitor()
    low, high = (0.3, "low", "low", 100.0), (0.9, "high", "high", 100.0)
    feed(mon, 0, [0] * 20_000, [high] * 2_000 + [low] * 18_000)
    feed(mon, 1, [0] * 20_000, [high] * 2_600 + [low] * 17_400)
    assert not {a.alert for a in report(mon, 1).alerts} & {"high_risk_share"}


def spending(rng: np.random.Generator, n: int, high_share: float, tenure: float,
             high_spends: float = 1.0) -> list[Observation | None]:
    """Customers whose bands stand still (``high_share`` high all along), their spend to date
    grown ``tenure``-fold, the high band's ``high_spends``-fold on top."""
    out: list[Observation | None] = []
    for _ in range(n):
        spend = tenure * float(rng.gamma(2, 50))
        if rng.random() < high_share:
            out.append((float(rng.uniform(0.8, 1.0)), "high", "high", high_spends * spend))
        else:
            out.append((float(rng.uniform(0.0, 0.5)), "low", "low", spend))
    return out


def test_ageing_population__raises_no_value_at_risk_alert() -> None:
    """Every customer's spend to date grew by 60% with tenure, the high band's share of
    customers and of the spend stood still: ageing, not drift (the spend at risk per
    customer seen rose by 60%, which alerted before it was read as a share)."""
    rng = np.random.default_rng(3)
    mon = monitor()
    feed(mon, 0, [0] * 2000 + [1] * 2000, spending(rng, 4000, 0.1, tenure=1.0))
    feed(mon, 1, [0] * 2000 + [1] * 2000, spending(rng, 4000, 0.1, tenure=1.6))
    rep = report(mon, 1)
    assert rep.value_at_risk_per_customer is not None
    assert rep.reference_value_at_risk_per_customer is not None
    assert rep.value_at_risk_per_customer > 1.4 * rep.reference_value_at_risk_per_customer
    assert rep.value_at_risk_share == pytest.approx(rep.reference_value_at_risk_share, abs=0.02)
    assert not {a.alert for a in rep.alerts} & VALUE_ALERTS


def test_spend_moving_to_the_high_band__raises_value_at_risk_naming_the_share() -> None:
    """As ageing as above, but the high band now holds the big spenders: the same share of
    customers holds about twice the share of the spend."""
    rng = np.random.default_rng(3)
    mon = monitor()
    feed(mon, 0, [0] * 2000 + [1] * 2000, spending(rng, 4000, 0.1, tenure=1.0))
    feed(mon, 1, [0] * 2000 + [1] * 2000, spending(rng, 4000, 0.1, tenure=1.6, high_spends=2.5))
    rep = report(mon, 1)
    assert rep.value_at_risk_share is not None and rep.reference_value_at_risk_share is not None
    assert rep.value_at_risk_share > 1.8 * rep.reference_value_at_risk_share
    assert {a.alert for a in rep.alerts} & VALUE_ALERTS == {"value_at_risk"}
    (alert,) = [a for a in rep.alerts if a.alert == "value_at_risk"]
    assert alert.value == pytest.approx(rep.value_at_risk_share / rep.reference_value_at_risk_share - 1)
    assert alert.detail.startswith(f"customers in the high-risk band hold {rep.value_at_risk_share:.1%} "
                                   f"of the spend to date of the customers seen, up from "
                                   f"{rep.reference_value_at_risk_share:.1%}")
    assert "rising most: " in alert.detail and "High-value loyalists" in alert.detail
    assert "Window shoppers" in alert.detail  # both segments' share rose


def test_first_bands_after_the_first_fit__are_no_moves_into_the_high_band() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 50, [None] * 50)  # no value model yet
    feed(mon, 1, [0] * 50, [(0.9, "high", None, 10.0)] * 50)  # the first fit: first bands
    rep = report(mon, 1)
    assert rep.entered_high_risk == 0 and rep.high_risk_share == 1.0
    assert rep.reference_high_risk_share is None  # nothing scored in the reference window
    assert not {a.alert for a in rep.alerts} & VALUE_ALERTS


def test_reference_window_straddling_the_first_fit__holds_the_value_alerts_back() -> None:
    """3-minute windows: the first fit comes in the reference window's last minute, then
    half the customers are scored at high risk. As scored that compares a reference
    scored for one minute (its first two have no churn risk) and alerts; held back, naming
    why. Three minutes later both windows are scored throughout and compare."""
    cfg = DriftConfig(windows=(60, 180), clock="event", min_customers=20, worker="test")
    mon = DriftMonitor(cfg, MODEL_FEATURES)
    low: list[Observation | None] = [(0.2, "low", None, 10.0)] * 100
    high: list[Observation | None] = [(0.9, "high", "low", 200.0)] * 100

    def three_minutes(close_at: int) -> DriftReport:
        return max((r for r in mon.close(close_at * MIN, {}, 1, NAMES) if r.window == "3m"),
                   key=lambda r: r.window_end)

    for minute in (0, 1):
        feed(mon, minute, [0] * 200, [None] * 200)  # no value model yet
    feed(mon, 2, [0] * 200, low + low)  # the first fit
    for minute in (3, 4, 5):
        feed(mon, minute, [0] * 200, high + low)
    rep = three_minutes(7)
    assert rep.reference_high_risk_share == 0.0 and rep.high_risk_share == 0.5
    assert rep.value_basis == "held"
    assert "first fitted within these windows: 400 of their customer updates" in rep.value_note
    assert not {a.alert for a in rep.alerts} & VALUE_ALERTS
    for minute in (6, 7, 8):
        feed(mon, minute, [0] * 200, high + low)
    later = three_minutes(10)
    assert (later.value_basis, later.value_note) == ("scored", "")
    assert later.high_risk_share == later.reference_high_risk_share == 0.5


def test_risk_scored_by_the_sweep__counts_when_scored_not_at_the_last_event() -> None:
    """Silent customers' risk rises at the re-scoring sweep: their events are old, the
    scoring is now."""
    mon = monitor()
    feed(mon, 0, [0] * 40, [(0.2, "low", "low", 10.0)] * 40)
    feed(mon, 1, [0] * 40, [(0.2, "low", "low", 10.0)] * 40)
    mon.observe([1000] * 30, [dict.fromkeys(MODEL_FEATURES, 0.0)] * 30, [0] * 30, [1.0] * 30,
                [0] * 30)  # the sweep's rows: assigned at their last event time (minute 0) ...
    mon.observe_risk(MIN + 5000, [0] * 30, [(0.9, "high", "low", 10.0)] * 30)  # ... scored now
    rep = report(mon, 1)
    assert rep.entered_high_risk == 30 and rep.risk[0].scored == 70


def test_no_value_model__leaves_the_risk_figures_out() -> None:
    mon = monitor()
    feed(mon, 0, [0] * 50, [None] * 50)
    feed(mon, 1, [0] * 50, [None] * 50)
    rep = report(mon, 1)
    assert rep.risk == [] and rep.high_risk_share is None and rep.value_at_risk_per_customer is None


def test_value_figures__are_exposed_as_metrics() -> None:
    m = Metrics(CollectorRegistry())
    mon = monitor()
    feed(mon, 0, [0] * 40 + [1] * 40, [(0.2, "low", "low", 10.0)] * 80)
    feed(mon, 1, [0] * 40 + [1] * 40, [(0.9, "high", "low", 10.0)] * 10 + [(0.2, "low", "low", 10.0)] * 70)
    rep = report(mon, 1)
    m.drift.record(rep)
    get = m.registry.get_sample_value
    assert get("streamseg_drift_high_risk_share", {"window": "1m"}) == pytest.approx(10 / 80)
    assert get("streamseg_drift_entered_high_risk", {"window": "1m", "segment": "0"}) == 10
    assert get("streamseg_drift_segment_churn_risk", {"window": "1m", "segment": "1"}) == pytest.approx(0.2)
    assert get("streamseg_drift_alert", {"window": "1m", "alert": "high_risk_share"}) == 1.0
    m.drift.set_thresholds(Thresholds())
    assert get("streamseg_drift_threshold", {"alert": "value_at_risk"}) == 0.25


def test_value_thresholds_and_high_band__come_from_settings() -> None:
    cfg = DriftConfig.from_settings(Settings(drift_high_risk_alert=0.1, drift_churn_risk_alert=0.2,
                                             drift_value_at_risk_alert=0.5,
                                             value_risk_bands="ok:0,watch:0.4,leaving:0.7"))
    t = cfg.thresholds
    assert (t.high_risk_share, t.segment_churn_risk, t.value_at_risk) == (0.1, 0.2, 0.5)
    assert cfg.high_band == "leaving"


def test_drift_scenarios_script__has_a_figure_for_every_alert_equal_to_the_alerts_value() -> None:
    """``load_tests/drift_scenarios.py`` reports each alert's highest figure; an alert type
    without a figure crashed the script at its last step."""
    scenarios = load_script("drift_scenarios")
    assert set(scenarios.FIGURES) == set(ALERT_NAMES)
    rep = loyalists_slipping()
    assert {a.alert for a in rep.alerts} >= VALUE_ALERTS
    for alert in rep.alerts:
        if alert.alert in VALUE_ALERTS:
            assert scenarios.FIGURES[alert.alert](rep) == pytest.approx(alert.value)


# -- value re-fits: a new version of the parameters moves every customer's risk at once ------
V1 = ValueParams(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=1)
#: a re-fit that reads the same customers as far likelier to lapse
V2 = dataclasses.replace(V1, alpha=3 * V1.alpha, a=2.0, b=1.0, version=2)


def scorer(params: ValueParams) -> ValueScorer:
    s = ValueScorer()
    s.adopt(params)
    return s


def feed_scored(mon: DriftMonitor, minute: int, segs: list[int], rows: np.ndarray,
                params: ValueParams, spend: np.ndarray) -> float:
    """The customers ``rows`` (frequency, recency, T, optionally the active days' three)
    scored with ``params`` as the engine does (risk, plain band, what it was computed from);
    returns their high-risk share."""
    risks, high = scorer(params).risk_rows(rows)
    seen: list[Observation | None] = [(r, "high" if h else "low", None, s) for r, h, s
                                      in zip(risks.tolist(), high.tolist(), spend.tolist(),
                                             strict=True)]
    n = len(segs)
    mon.observe([minute * MIN + 1000] * n, [dict.fromkeys(MODEL_FEATURES, 0.0)] * n, segs,
                [1.0] * n, list(segs))
    mon.observe_risk(minute * MIN + 2000, segs, seen,
                     [(params.version, *row, *[np.nan] * (6 - len(row))) for row in rows.tolist()])
    return float(high.mean())


def refit_between(silent_days: float, value: ValueScorer | None,
                  sample: int = 1000) -> tuple[DriftReport, float]:
    """A minute of 400 buyers scored with V1, then the same buyers (``silent_days`` more
    silent) scored with V2 (a re-fit): the report, and the high-risk share's rise as scored."""
    rng = np.random.default_rng(3)
    cfg = DriftConfig(windows=(60,), clock="event", min_customers=20, worker="test",
                      currency="EUR", sample_per_slot=sample)
    mon = DriftMonitor(cfg, MODEL_FEATURES)
    x = rng.integers(0, 6, 400).astype(float)
    t_x = np.where(x > 0, rng.uniform(10, 120, 400).round(), 0.0)
    rows = np.column_stack([x, t_x, t_x + rng.uniform(1, 60, 400).round()])
    spend, segs = rng.gamma(2, 50, 400), [0] * 200 + [1] * 200
    before = feed_scored(mon, 0, segs, rows, V1, spend)
    after = feed_scored(mon, 1, segs, rows + np.array([0.0, 0.0, silent_days]), V2, spend)
    (rep,) = mon.close(3 * MIN, {}, 1, NAMES, value=value)
    return rep, after - before


def test_value_refit_with_customers_unchanged__compares_both_windows_rescored_and_raises_no_value_alert() -> None:
    rep, rise = refit_between(0.0, scorer(V2))
    assert rise > 0.15  # as scored, the re-fit alone put many more customers in the high band
    assert rep.value_basis == "rescored"
    assert "value parameters v1, v2" in rep.value_note and "re-scored with v2" in rep.value_note
    assert not {a.alert for a in rep.alerts} & VALUE_ALERTS
    # the same customers under the same parameters: the same figures
    assert rep.high_risk_share == pytest.approx(rep.reference_high_risk_share)
    assert [s.mean_churn_risk for s in rep.risk] == pytest.approx(
        [s.reference_mean_churn_risk for s in rep.risk])


def test_customers_lapsing_across_a_value_refit__still_raise_the_value_alerts() -> None:
    rep, _ = refit_between(150.0, scorer(V2))  # everyone 150 days more silent
    assert rep.value_basis == "rescored"
    assert {a.alert for a in rep.alerts} >= VALUE_ALERTS


def test_value_refit_re_scored_from_a_sample__weighs_rows_back_to_the_slots_counts() -> None:
    rep, _ = refit_between(0.0, scorer(V2), sample=100)
    assert rep.value_basis == "rescored"
    assert sum(s.scored for s in rep.risk) == 400 and sum(s.reference_scored for s in rep.risk) == 400
    assert not {a.alert for a in rep.alerts} & VALUE_ALERTS


def test_value_refit_without_parameters_to_rescore_with__holds_the_value_alerts_back() -> None:
    rep, rise = refit_between(0.0, None)
    assert rise > 0.15
    assert rep.value_basis == "held" and "could not be re-scored" in rep.value_note
    assert not {a.alert for a in rep.alerts} & VALUE_ALERTS


def test_one_value_version_in_both_windows__compares_the_risks_as_scored() -> None:
    rep = loyalists_slipping()
    assert (rep.value_basis, rep.value_note) == ("scored", "")
