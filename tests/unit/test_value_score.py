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
    banded_state,
    expected_purchases,
    expected_spend,
    next_band,
    p_alive,
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
