"""The hot path's closed forms equal pymc-marketing's own predictions for the same parameters.

pymc-marketing's models are built on the customers' table and given the point parameters
as a one-draw posterior, so every prediction below is the library's formula on the same
inputs; only PyTensor-free code paths are used (no fit, no compilation).
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pandas as pd
import pytest
from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
from pymc_marketing.clv.utils import customer_lifetime_value

from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS
from streamseg.value.params import ValueParams
from streamseg.value.score import (
    ActiveDays,
    active_from_state,
    banded_state,
    churn_risk,
    combined_churn_risk,
    expected_purchases,
    expected_spend,
    next_band,
    p_alive,
    p_alive_active,
    p_no_purchase,
    rfm_from_state,
    score,
    score_rfm,
    score_state,
)

PARAMS = [
    ValueParams(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=1),
    ValueParams(r=1.7, alpha=60.0, a=2.5, b=0.8, p=2.1, q=9.0, v=80.0, version=2),  # b < 1
]
# (frequency, recency, T, monetary): a regular buyer, a lapsed one, one purchase a year ago,
# one purchase today, a single day of history, a big spender, many purchases
CUSTOMERS = [(4, 60, 70, 35.0), (3, 20, 300, 80.0), (0, 0, 365, 0.0), (0, 0, 0, 0.0),
             (1, 1, 1, 12.5), (1, 0, 0, 10.0), (12, 200, 210, 400.0), (40, 359, 365, 22.0)]
HORIZON = 90.0
#: an active-day fit (visits make many more active days than purchase days: a higher rate)
ACTIVE = {"active_r": 1.1, "active_alpha": 9.5, "active_a": 0.35, "active_b": 4.2}
# the active days of CUSTOMERS (at least their purchase days; same T or longer)
ACTIVE_DAYS = [(20, 66, 72), (9, 25, 300), (0, 0, 365), (0, 0, 0), (5, 1, 1), (2, 0, 3),
               (60, 205, 210), (150, 364, 365)]


def _table() -> pd.DataFrame:
    f, rec, t, m = zip(*CUSTOMERS, strict=True)
    return pd.DataFrame({"customer_id": range(len(CUSTOMERS)), "frequency": np.array(f, float),
                         "recency": np.array(rec, float), "T": np.array(t, float),
                         "monetary_value": np.array(m, float)})


def _library(prm: ValueParams, data: pd.DataFrame) -> tuple[BetaGeoModel, GammaGammaModel]:
    bg, gg = BetaGeoModel(), GammaGammaModel()
    bg.build_model(data)
    gg.build_model(data[data["frequency"] > 0].reset_index(drop=True))
    bg.idata = az.from_dict(posterior={k: np.array([[getattr(prm, k)]]) for k in ("r", "alpha", "a", "b")})
    gg.idata = az.from_dict(posterior={k: np.array([[getattr(prm, k)]]) for k in ("p", "q", "v")})
    return bg, gg


def _values(x: object) -> np.ndarray:
    return np.asarray(x).reshape(-1)


@pytest.mark.parametrize("prm", PARAMS, ids=["cdnow", "b<1"])
def test_closed_forms__equal_the_library_predictions(prm: ValueParams) -> None:
    data = _table()
    bg, gg = _library(prm, data)
    lib_alive = _values(bg.expected_probability_alive(data))
    lib_purchases = _values(bg.expected_purchases(data, future_t=HORIZON))
    lib_spend = _values(gg.expected_customer_spend(data))
    lib_none = _values(bg.expected_probability_no_purchase(HORIZON, data))
    clv = _values(customer_lifetime_value(bg, data.assign(future_spend=lib_spend),
                                          future_t=int(HORIZON // 30), discount_rate=0.0))
    for i, (x, t_x, big_t, m) in enumerate(CUSTOMERS):
        ours = score(x, t_x, big_t, m, prm, HORIZON)
        assert ours.p_alive == pytest.approx(lib_alive[i], rel=1e-9, abs=1e-12)
        assert ours.expected_purchases == pytest.approx(lib_purchases[i], rel=1e-9, abs=1e-12)
        if x > 0:  # without repeat purchases the library's spend is its population mean too
            assert expected_spend(x, m, prm) == pytest.approx(lib_spend[i], rel=1e-9)
            # the library's P(no purchase) keeps the dropped-after-last-purchase term at x = 0
            # (where the likelihood has none; see test_no_purchase_without_repeats__...)
            assert ours.churn_risk == pytest.approx(lib_none[i], rel=1e-9, abs=1e-12)
            assert ours.lifetime_value == pytest.approx(clv[i], rel=1e-9, abs=1e-9)
        assert all(math.isfinite(v) for v in (ours.p_alive, ours.churn_risk,
                                               ours.expected_purchases, ours.lifetime_value))


def test_no_purchase_without_repeats__is_the_gamma_posterior_of_the_rate() -> None:
    """x = 0: alive for sure (BG/NBD drops out only after a repeat purchase), rate ~ Gamma(r, alpha + T)."""
    prm = PARAMS[0]
    for big_t in (0.0, 1.0, 30.0, 365.0):
        want = ((prm.alpha + big_t) / (prm.alpha + big_t + HORIZON)) ** prm.r
        assert p_no_purchase(0, 0, big_t, HORIZON, prm) == pytest.approx(want, rel=1e-12)
    # and it equals the Monte Carlo of the model itself
    rng = np.random.default_rng(7)
    lam = rng.gamma(prm.r, 1.0 / (prm.alpha + 30.0), 400_000)
    assert p_no_purchase(0, 0, 30.0, HORIZON, prm) == pytest.approx(np.exp(-lam * HORIZON).mean(),
                                                                    abs=3e-3)


def test_new_customer__expected_purchases_equal_the_library_new_customer() -> None:
    prm = PARAMS[0]
    bg, _ = _library(prm, _table())
    lib = _values(bg.expected_purchases_new_customer(_table(), t=HORIZON))[0]
    assert expected_purchases(0, 0, 0, HORIZON, prm) == pytest.approx(lib, rel=1e-9)


def test_silence__raises_churn_risk_and_lowers_p_alive() -> None:
    prm = PARAMS[0]
    risks = [score(3, 40, t, 20.0, prm, HORIZON).churn_risk for t in (40, 60, 120, 400)]
    alive = [p_alive(3, 40, t, prm) for t in (40, 60, 120, 400)]
    assert risks == sorted(risks) and risks[0] < risks[-1]
    assert alive == sorted(alive, reverse=True) and alive[0] > alive[-1]
    one = [score(0, 0, t, 0.0, prm, HORIZON).churn_risk for t in (0, 10, 100)]
    assert one == sorted(one) and one[0] < one[-1]  # one purchase: risk grows with silence too


@pytest.mark.parametrize("state", [
    {},  # no purchase (clicks only)
    {"n_refunds": 2.0, "refund_amount": 50.0},  # refunds only
    {"first_purchase_ts": 5 * DAY_MS, "last_purchase_ts": 5 * DAY_MS, "n_purchase_days": 1.0,
     "sum_amount": 30.0, "first_day_amount": 30.0},  # one purchase
    {"first_purchase_ts": 9.9 * DAY_MS, "last_purchase_ts": 9.95 * DAY_MS, "n_purchase_days": 1.0,
     "sum_amount": 30.0, "first_day_amount": 30.0, "n_orders": 3.0},  # a single day of history
    {"first_purchase_ts": 1 * DAY_MS, "last_purchase_ts": 8 * DAY_MS, "n_purchase_days": 2.0,
     "sum_amount": 30.0, "first_day_amount": 10.0, "refund_amount": 45.0},  # refunded beyond spend
], ids=["no-purchase", "refunds-only", "one-purchase", "one-day", "over-refunded"])
def test_edge_customers__get_defined_values(state: dict[str, float]) -> None:
    prm = PARAMS[0]
    v = score_rfm(rfm_from_state(state, 10 * DAY_MS), prm, HORIZON)
    for x in (v.p_alive, v.churn_risk, v.expected_purchases, v.lifetime_value):
        assert math.isfinite(x) and x >= 0.0
    assert 0.0 <= v.churn_risk <= 1.0 and 0.0 <= v.p_alive <= 1.0
    if "first_purchase_ts" not in state:  # not a buyer yet: a new customer of the population
        assert v.expected_purchases == pytest.approx(expected_purchases(0, 0, 0, HORIZON, prm))
        assert v.lifetime_value == pytest.approx(v.expected_purchases * prm.population_spend)


@pytest.mark.parametrize("text", ["", "low:0.1,high:0.8", "low:0,high:0.5,mid:0.3", "low:0,high",
                                  "low:0,high:1.5", ":0"])
def test_risk_bands__that_do_not_start_at_0_and_rise_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="STREAMSEG_VALUE_RISK_BANDS"):
        Settings(value_risk_bands=text)


def test_band__is_debounced_by_the_margin_both_ways() -> None:
    bands = Settings().value_bands
    assert [next_band(r, "low", bands, 0.05) for r in (0.52, 0.56, 0.9)] == ["low", "medium", "high"]
    assert [next_band(r, "high", bands, 0.05) for r in (0.78, 0.74, 0.1)] == ["high", "medium", "low"]
    assert next_band(0.3, None, bands, 0.05) == "low"  # nothing published yet: the plain band


@pytest.mark.parametrize("prm", PARAMS, ids=["cdnow", "b<1"])
@pytest.mark.parametrize("stored", [None, "low", "medium", "high"])
def test_banded_value__is_the_whole_value_computed_later(prm: ValueParams, stored: str | None) -> None:
    """What the hot path keeps per customer (risk and band now, the rest when published)
    is exactly :func:`score_state`'s value of the same state."""
    bands = Settings().value_bands
    states = [{}, {"n_refunds": 2.0, "refund_amount": 50.0}]
    states += [{"first_purchase_ts": 1.0 * DAY_MS, "last_purchase_ts": (1.0 + rec) * DAY_MS,
                "n_purchase_days": x + 1.0, "sum_amount": (x + 1.0) * max(m, 1.0),
                "first_day_amount": max(m, 1.0)} for x, rec, _t, m in CUSTOMERS]
    for state in states:
        state = {**state, **({"val_band": stored} if stored else {})}
        for now in (1.0 * DAY_MS, 40.0 * DAY_MS, 400.0 * DAY_MS):
            lazy = banded_state(state, now, prm, HORIZON, currency="EUR", bands=bands,
                                band_margin=0.05)
            whole = score_state(state, now, prm, HORIZON, currency="EUR", bands=bands,
                                band_margin=0.05)
            assert lazy.full() == whole and lazy.risk_band == whole.risk_band, (state, now)
            assert lazy.to_dict() == whole.to_dict()


@pytest.mark.parametrize("prm", PARAMS, ids=["cdnow", "b<1"])
def test_active_day_p_alive__equals_the_library_and_the_risk_the_combined_formula(
    prm: ValueParams,
) -> None:
    both = ValueParams(**{**prm.to_dict(), **ACTIVE})
    act = pd.DataFrame({"customer_id": range(len(ACTIVE_DAYS)),
                        **{k: np.array(col, float) for k, col in
                           zip(("frequency", "recency", "T"), zip(*ACTIVE_DAYS, strict=True),
                               strict=True)}})
    bg_act = BetaGeoModel()
    bg_act.build_model(act)
    bg_act.idata = az.from_dict(posterior={k: np.array([[ACTIVE[f"active_{k}"]]])
                                           for k in ("r", "alpha", "a", "b")})
    lib_alive_active = _values(bg_act.expected_probability_alive(act))
    bg, _ = _library(prm, _table())
    lib_alive = _values(bg.expected_probability_alive(_table()))
    lib_none = _values(bg.expected_probability_no_purchase(HORIZON, _table()))
    for i, ((x, t_x, big_t, _m), a) in enumerate(zip(CUSTOMERS, ACTIVE_DAYS, strict=True)):
        days = ActiveDays(*map(float, a))
        alive = p_alive_active(days, both)
        assert alive == pytest.approx(lib_alive_active[i], rel=1e-9, abs=1e-12)
        quiet = ((prm.alpha + big_t) / (prm.alpha + big_t + HORIZON)) ** (prm.r + x)
        want = 1.0 - alive + alive * quiet
        assert churn_risk(x, t_x, big_t, both, HORIZON, days) == pytest.approx(want, rel=1e-12)
        assert score(x, t_x, big_t, _m, both, HORIZON, active=days).churn_risk == \
            pytest.approx(want, rel=1e-12)
        if x > 0:  # with the purchase model's own P(alive) it is the library's P(no purchase)
            assert combined_churn_risk(x, big_t, float(lib_alive[i]), prm, HORIZON) == \
                pytest.approx(lib_none[i], rel=1e-9, abs=1e-12)


def test_parameters_without_an_active_day_fit__score_the_churn_risk_as_before() -> None:
    prm = PARAMS[0]  # as published before the active-day fit: no active_* fields
    assert ValueParams.from_json(prm.to_json()).active is None
    for (x, t_x, big_t, _m), a in zip(CUSTOMERS, ACTIVE_DAYS, strict=True):
        assert churn_risk(x, t_x, big_t, prm, HORIZON, ActiveDays(*map(float, a))) == \
            p_no_purchase(x, t_x, big_t, HORIZON, prm)


@pytest.mark.parametrize("state", [
    {"first_ts": 2 * DAY_MS, "last_ts": 6 * DAY_MS, "n_active_days": 3.0},  # visits, no purchase
    {"first_ts": 2 * DAY_MS, "last_ts": 6 * DAY_MS, "n_active_days": 2.0, "n_refunds": 1.0,
     "refund_amount": 20.0},  # refunds only
    {"first_ts": 9.9 * DAY_MS, "last_ts": 9.95 * DAY_MS, "n_active_days": 1.0,
     "first_purchase_ts": 9.9 * DAY_MS, "last_purchase_ts": 9.95 * DAY_MS, "n_purchase_days": 1.0,
     "sum_amount": 30.0, "first_day_amount": 30.0},  # a single day of history
    {"first_ts": 1 * DAY_MS, "last_ts": 9 * DAY_MS, "n_active_days": 4.0,
     "first_purchase_ts": 5 * DAY_MS, "last_purchase_ts": 5 * DAY_MS, "n_purchase_days": 1.0,
     "sum_amount": 30.0, "first_day_amount": 30.0},  # one purchase among visits
    {"n_orders": 0.0},  # a state from before the active-day count
], ids=["visits-only", "refunds-only", "one-day", "one-purchase", "no-active-count"])
def test_edge_customers_with_active_days__get_defined_values(state: dict[str, float]) -> None:
    prm = ValueParams(**{**PARAMS[0].to_dict(), **ACTIVE})
    now = 10 * DAY_MS
    v = score_state(state, now, prm, HORIZON)
    assert 0.0 <= v.churn_risk <= 1.0 and math.isfinite(v.churn_risk)
    assert banded_state(state, now, prm, HORIZON).churn_risk == v.churn_risk
    rfm, act = rfm_from_state(state, now), active_from_state(state, now)
    if act is None or act.frequency == 0:  # one active day (or none counted): the purchase model's
        assert v.churn_risk == pytest.approx(
            p_no_purchase(rfm.frequency, rfm.recency, rfm.T, HORIZON, prm), rel=1e-12)
    else:  # still there by the active days, and with no purchase yet, a new customer's rate
        alive = p_alive_active(act, prm)
        assert alive is not None and 0.0 < alive <= 1.0
        quiet = ((prm.alpha + rfm.T) / (prm.alpha + rfm.T + HORIZON)) ** (prm.r + rfm.frequency)
        assert v.churn_risk == pytest.approx(1.0 - alive + alive * quiet, rel=1e-12)
