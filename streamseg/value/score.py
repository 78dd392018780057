"""Scoring one customer with fitted :class:`ValueParams`: the BG/NBD and Gamma-Gamma closed forms.

Cheap enough for the hot path (a few scipy scalar calls): workers score every customer
whose events they apply, and the re-scoring sweep scores silent ones, with the parameters
the leader published. ``tests/unit/test_value_score.py`` checks every formula against
pymc-marketing's own predictions for the same parameters and inputs.

The inputs are the usual buy-till-you-die summary, in whole days (UTC calendar days, as
pymc-marketing's ``rfm_summary`` counts them):

* ``frequency``: repeat purchase days (days with an order, minus the first);
* ``recency``: days from the first to the last purchase day;
* ``T``: days from the first purchase day to today;
* ``monetary_value``: mean spend of the repeat purchase days, net of refunds.

``churn_risk`` is the probability of **no purchase in the next** ``horizon_days``
(Fader and Hardie's P(X(T, T+t) = 0)): unlike 1 - P(alive), which BG/NBD holds at 1 for a
customer without repeat purchases, it rises with silence for every buyer.

When the parameters carry an active-day fit (:attr:`ValueParams.active`), whether the
customer is still there is read from their *active days* (UTC days with any event), the
chance to buy while there from the purchase fit (:func:`combined_churn_risk`):

    churn risk = 1 - P_a + P_a ((alpha + T) / (alpha + T + h))^(r + x)

with P_a the active-day BG/NBD's P(alive) of the customer's :class:`ActiveDays`; r, alpha
the purchase fit's and x, T the purchase summary's. With the purchase model's own P(alive)
in place of P_a this is exactly :func:`p_no_purchase`.

>>> params = ValueParams(r=0.25, alpha=4.4, a=0.79, b=2.4, p=6.2, q=3.7, v=15.4, version=1)
>>> v = score(2, 30.0, 38.0, 35.0, params, 90.0)  # frequency, recency, T, monetary_value
>>> round(v.p_alive, 3), round(v.churn_risk, 3), round(v.expected_purchases, 3)
(0.729, 0.327, 2.448)
>>> round(v.lifetime_value, 2), v.risk_band
(85.85, 'low')
>>> later = score(2, 30.0, 200.0, 35.0, params, 90.0)  # 162 days later
>>> later.churn_risk > v.churn_risk and later.risk_band
'high'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from scipy.special import hyp2f1

from streamseg.timeunits import DAY_MS
from streamseg.value.params import ValueParams

#: churn risk at or above these starts the band (ordered; the first band starts at 0)
DEFAULT_BANDS: tuple[tuple[str, float], ...] = (("low", 0.0), ("medium", 0.5), ("high", 0.8))

State = Mapping[str, float | str]


@dataclass(frozen=True, slots=True)
class Rfm:
    """A customer's buy-till-you-die summary, in days (see the module doc)."""

    frequency: float
    recency: float
    T: float
    monetary_value: float


@dataclass(frozen=True, slots=True)
class ActiveDays:
    """A customer's summary of active days (any event), in days, as :class:`Rfm`'s of purchases:
    active days after the first, first to last active day, first active day to today."""

    frequency: float
    recency: float
    T: float


@dataclass(frozen=True, slots=True)
class CustomerValue:
    """What the model says of one customer (the ``value`` object of the API's customer body)."""

    p_alive: float
    churn_risk: float
    expected_purchases: float
    horizon_days: float
    lifetime_value: float
    currency: str
    risk_band: str
    params_version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _n(state: State, key: str) -> float | None:
    v = state.get(key)
    return float(v) if isinstance(v, int | float) else None


def _day(ts_ms: float) -> int:
    return math.floor(ts_ms / DAY_MS)


def rfm_from_state(state: State, now_ms: float) -> Rfm:
    """The summary of a customer's stored state (``apply_events.lua``'s accumulators) at ``now_ms``.

    No purchase (or refunds only) gives all zeros: scored as a new customer.

    >>> day = DAY_MS
    >>> st = {"first_purchase_ts": 2.5 * day, "last_purchase_ts": 30.2 * day, "n_purchase_days": 3.0,
    ...       "sum_amount": 100.0, "first_day_amount": 40.0, "refund_amount": 10.0}
    >>> rfm_from_state(st, now_ms=40.9 * day)  # repeat days mean 30, 10% refunded
    Rfm(frequency=2.0, recency=28.0, T=38.0, monetary_value=27.0)
    >>> rfm_from_state({"n_orders": 0.0, "n_refunds": 2.0}, 5 * day)
    Rfm(frequency=0.0, recency=0.0, T=0.0, monetary_value=0.0)
    """
    first, last = _n(state, "first_purchase_ts"), _n(state, "last_purchase_ts")
    if first is None or last is None:
        return Rfm(0.0, 0.0, 0.0, 0.0)
    days = _n(state, "n_purchase_days")
    if days is None:  # a state from before the day count: its orders, at most one a day
        days = min(_n(state, "n_orders") or 1.0, float(_day(last) - _day(first) + 1))
    frequency = max(0.0, days - 1.0)
    big_t = float(max(0, _day(now_ms) - _day(first)))
    recency = float(min(big_t, max(0, _day(last) - _day(first))))
    return Rfm(frequency, recency, big_t, _monetary(state, frequency))


def active_from_state(state: State, now_ms: float) -> ActiveDays | None:
    """The active-day summary of a stored state at ``now_ms`` (None for a state from before the
    active-day count, or without events: scored by the purchase model alone).

    >>> day = DAY_MS
    >>> active_from_state({"first_ts": 2.5 * day, "last_ts": 30.2 * day, "n_active_days": 6.0}, 40.9 * day)
    ActiveDays(frequency=5.0, recency=28.0, T=38.0)
    """
    first, last, days = _n(state, "first_ts"), _n(state, "last_ts"), _n(state, "n_active_days")
    if first is None or last is None or days is None:
        return None
    big_t = float(max(0, _day(now_ms) - _day(first)))
    return ActiveDays(max(0.0, days - 1.0), float(min(big_t, max(0, _day(last) - _day(first)))),
                      big_t)


def _monetary(state: State, frequency: float) -> float:
    """Mean spend of the repeat purchase days, times the share not refunded."""
    if frequency <= 0:
        return 0.0
    gross = _n(state, "sum_amount") or 0.0
    repeat = max(0.0, gross - (_n(state, "first_day_amount") or 0.0))
    kept = max(0.0, 1.0 - (_n(state, "refund_amount") or 0.0) / gross) if gross > 0 else 0.0
    return repeat / frequency * kept


# -- BG/NBD ------------------------------------------------------------------------
def p_alive(x: float, t_x: float, big_t: float, prm: ValueParams) -> float:
    """P(alive at T | x, t_x, T): 1 without repeat purchases (BG/NBD drops out only after one)."""
    return _alive(x, t_x, big_t, prm.r, prm.alpha, prm.a, prm.b)


def _alive(x: float, t_x: float, big_t: float, r: float, alpha: float, a: float, b: float) -> float:
    """BG/NBD's P(alive at T | x, t_x, T) for parameters r, alpha, a, b."""
    if x <= 0:
        return 1.0
    log_div = (r + x) * math.log((alpha + big_t) / (alpha + t_x)) + math.log(a / (b + x - 1.0))
    return 1.0 / (1.0 + math.exp(min(700.0, log_div)))


def p_alive_active(active: ActiveDays, prm: ValueParams) -> float | None:
    """The active-day BG/NBD's P(alive) of ``active`` (None without an active-day fit)."""
    fit = prm.active
    if fit is None:
        return None
    return _finite(_alive(active.frequency, active.recency, active.T, *fit), 1.0)


def expected_purchases(x: float, t_x: float, big_t: float, t: float, prm: ValueParams) -> float:
    """E[purchases in (T, T + t] | x, t_x, T] (Fader, Hardie and Lee 2005, eq. 10)."""
    r, alpha, a, b = prm.r, prm.alpha, prm.a, prm.b
    if t <= 0:
        return 0.0
    hyp = float(hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + big_t + t)))
    numerator = (a + b + x - 1.0) / (a - 1.0) * (
        1.0 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp)
    denominator = 1.0
    if x > 0:
        denominator += a / (b + x - 1.0) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    return _finite(numerator / denominator)


def p_no_purchase(x: float, t_x: float, big_t: float, t: float, prm: ValueParams) -> float:
    """P(no purchase in (T, T + t] | x, t_x, T) (Fader and Hardie, note 039, eq. 34).

    The term of a customer who dropped out after the last purchase exists only when
    there was a repeat purchase (x > 0), as in the likelihood.
    """
    r, alpha, a, b = prm.r, prm.alpha, prm.a, prm.b
    k_f = betaln(a, b + x) - (r + x) * math.log(alpha + big_t + t)
    k_m = betaln(a, b + x) - (r + x) * math.log(alpha + big_t)
    if x <= 0:
        return math.exp(k_f - k_m)
    k_e = betaln(a + 1.0, b + x - 1.0) - (r + x) * math.log(alpha + t_x)
    k1, k2 = max(k_e, k_f), max(k_e, k_m)
    numer = math.exp(k_e - k1) + math.exp(k_f - k1)
    denom = math.exp(k_e - k2) + math.exp(k_m - k2)
    return min(1.0, max(0.0, math.exp(k1 - k2) * numer / denom))


def combined_churn_risk(x: float, big_t: float, alive: float, prm: ValueParams,
                        horizon_days: float) -> float:
    """P(no purchase over the horizon) of a customer still there with probability ``alive``
    (the active-day fit's), buying at the purchase fit's posterior rate (Gamma(r + x,
    alpha + T)) while there: 1 - alive + alive ((alpha + T) / (alpha + T + h))^(r + x)."""
    quiet = ((prm.alpha + big_t) / (prm.alpha + big_t + horizon_days)) ** (prm.r + x)
    return min(1.0, max(0.0, 1.0 - alive + alive * quiet))


def churn_risk(x: float, t_x: float, big_t: float, prm: ValueParams, horizon_days: float,
               active: ActiveDays | None = None) -> float:
    """The churn risk (1 where it is not finite): :func:`combined_churn_risk` when there are
    active days and an active-day fit, else :func:`p_no_purchase` over the horizon."""
    alive = None if active is None else p_alive_active(active, prm)
    if alive is None:
        return _finite(p_no_purchase(x, t_x, big_t, horizon_days, prm), 1.0)
    return _finite(combined_churn_risk(x, big_t, alive, prm, horizon_days), 1.0)


# -- Gamma-Gamma -------------------------------------------------------------------
def expected_spend(x: float, monetary_value: float, prm: ValueParams) -> float:
    """E[spend per purchase day | x repeat days of mean ``monetary_value``] (Fader and Hardie 2013, eq. 5)."""
    if x <= 0 or monetary_value <= 0:
        return prm.population_spend if x <= 0 else 0.0
    weight = prm.p * x / (prm.p * x + prm.q - 1.0)
    return (1.0 - weight) * prm.population_spend + weight * monetary_value


def betaln(a: float, b: float) -> float:
    """log B(a, b) (math.lgamma: a tenth of scipy.special.betaln's cost on one pair of floats)."""
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _finite(v: float, default: float = 0.0) -> float:
    return v if math.isfinite(v) else default


def band(churn_risk: float, bands: tuple[tuple[str, float], ...] = DEFAULT_BANDS) -> str:
    """The name of the last band whose lower bound ``churn_risk`` reaches."""
    name = bands[0][0]
    for label, lower in bands:
        if churn_risk >= lower:
            name = label
    return name


def next_band(churn_risk: float, previous: str | None, bands: tuple[tuple[str, float], ...],
              margin: float) -> str:
    """The band to publish: :func:`band`, but leaving ``previous`` only once ``churn_risk`` is
    ``margin`` past the boundary, so a customer near one does not flap (as segment_margin
    does for segments).

    >>> b = (("low", 0.0), ("high", 0.8))
    >>> next_band(0.81, "low", b, 0.05), next_band(0.86, "low", b, 0.05), next_band(0.76, "high", b, 0.05)
    ('low', 'high', 'high')
    """
    now = band(churn_risk, bands)
    names = [name for name, _ in bands]
    if previous not in names or now == previous:
        return now
    was = names.index(previous)
    if names.index(now) > was:  # rising: past the next band's lower bound by the margin
        return now if churn_risk >= bands[was + 1][1] + margin else previous
    return now if churn_risk < bands[was][1] - margin else previous


def score(frequency: float, recency: float, T: float, monetary_value: float,
          params: ValueParams, horizon_days: float, *, currency: str = "",
          bands: tuple[tuple[str, float], ...] = DEFAULT_BANDS, previous_band: str | None = None,
          band_margin: float = 0.0, active: ActiveDays | None = None) -> CustomerValue:
    """Every value of one customer over the next ``horizon_days`` (see the module doc).

    ``previous_band``, ``band_margin``: the band last published and the margin to leave it
    (:func:`next_band`); by default the plain band of the risk. ``active``: the customer's
    active days (the churn risk reads them when ``params`` have an active-day fit).
    """
    x, t_x, big_t = frequency, recency, T
    purchases = max(0.0, expected_purchases(x, t_x, big_t, horizon_days, params))
    risk = churn_risk(x, t_x, big_t, params, horizon_days, active)
    spend = _finite(expected_spend(x, monetary_value, params))
    return CustomerValue(
        p_alive=_finite(p_alive(x, t_x, big_t, params), 1.0), churn_risk=risk,
        expected_purchases=purchases, horizon_days=horizon_days,
        lifetime_value=max(0.0, spend * purchases), currency=currency,
        risk_band=next_band(risk, previous_band, bands, band_margin), params_version=params.version)


@dataclass(frozen=True, slots=True)
class BandedValue:
    """A customer's churn risk and band, with the rest of its value computed only when asked.

    The hot path needs the band of every customer a batch touched, to see whether it
    changed, but the whole value (expected purchases: a hypergeometric function) only for
    the few customers it publishes. ``full()`` equals :func:`score` of the same inputs.
    """

    rfm: Rfm
    params: ValueParams
    horizon_days: float
    currency: str
    churn_risk: float
    risk_band: str
    active: ActiveDays | None = None

    def full(self) -> CustomerValue:
        x, t_x, big_t = self.rfm.frequency, self.rfm.recency, self.rfm.T
        prm, horizon = self.params, self.horizon_days
        purchases = max(0.0, expected_purchases(x, t_x, big_t, horizon, prm))
        spend = _finite(expected_spend(x, self.rfm.monetary_value, prm))
        return CustomerValue(
            p_alive=_finite(p_alive(x, t_x, big_t, prm), 1.0), churn_risk=self.churn_risk,
            expected_purchases=purchases, horizon_days=horizon,
            lifetime_value=max(0.0, spend * purchases), currency=self.currency,
            risk_band=self.risk_band, params_version=prm.version)

    def to_dict(self) -> dict[str, Any]:
        return self.full().to_dict()


def banded_state(state: State, now_ms: float, params: ValueParams, horizon_days: float, *,
                 currency: str = "", bands: tuple[tuple[str, float], ...] = DEFAULT_BANDS,
                 band_margin: float = 0.0) -> BandedValue:
    """:func:`score_state` with a ``band_margin``, lazily: only the risk and band now."""
    rfm, active = rfm_from_state(state, now_ms), active_from_state(state, now_ms)
    risk = churn_risk(rfm.frequency, rfm.recency, rfm.T, params, horizon_days, active)
    stored = state.get("val_band")
    return BandedValue(rfm, params, horizon_days, currency, risk,
                       next_band(risk, stored if isinstance(stored, str) else None, bands,
                                 band_margin), active)


def score_rfm(rfm: Rfm, params: ValueParams, horizon_days: float, **kw: Any) -> CustomerValue:
    """:func:`score` of a summary (keywords as :func:`score`'s)."""
    return score(rfm.frequency, rfm.recency, rfm.T, rfm.monetary_value, params, horizon_days, **kw)


def score_state(state: State, now_ms: float, params: ValueParams, horizon_days: float, *,
                currency: str = "", bands: tuple[tuple[str, float], ...] = DEFAULT_BANDS,
                band_margin: float | None = None) -> CustomerValue:
    """:func:`score` of a stored state at ``now_ms``; with a ``band_margin``, the band leaves
    the stored one (``val_band``) as :func:`next_band` says."""
    stored = state.get("val_band") if band_margin is not None else None
    return score_rfm(rfm_from_state(state, now_ms), params, horizon_days, currency=currency,
                     bands=bands, previous_band=stored if isinstance(stored, str) else None,
                     band_margin=band_margin or 0.0, active=active_from_state(state, now_ms))
