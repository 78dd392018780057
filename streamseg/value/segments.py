"""Customer value per segment: the leader's sample scored and summed by membership.

Pure functions: :func:`sample_values` runs where the sample is (the sample process) and
returns small sums per segment; :func:`segment_values` turns them into the catalog's
:class:`~streamseg.publish.records.SegmentValue` with the live sizes.

>>> from streamseg.timeunits import DAY_MS
>>> prm = ValueParams(r=0.25, alpha=4.4, a=0.79, b=2.4, p=6.2, q=3.7, v=15.4, version=1)
>>> st = {"seg": 1.0, "first_purchase_ts": 0.0, "last_purchase_ts": 0.0, "sum_amount": 20.0}
>>> sums = sample_values([st, st], 200 * DAY_MS, prm, 90.0, DEFAULT_BANDS)
>>> sums[1].n, sums[1].high
(2, 2)
>>> v = segment_values(sums, {1: 10}, {}, None, prm, 90.0, "EUR")[1]
>>> v.customers, v.high_risk_share, v.value_at_risk, v.net_inflow
(10, 1.0, 200.0, None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streamseg.publish.records import SegmentValue
from streamseg.value.params import ValueParams
from streamseg.value.score import DEFAULT_BANDS, State, score_state

__all__ = ["DEFAULT_BANDS", "Sums", "sample_values", "segment_values"]


@dataclass(slots=True)
class Sums:
    """One segment's sampled members, summed."""

    n: int = 0
    risk: float = 0.0
    high: int = 0
    purchases: float = 0.0
    ltv: float = 0.0
    spend_at_risk: float = 0.0  # net spend to date of members in the highest band


def _net_spend(state: State) -> float:
    gross, refunded = state.get("sum_amount", 0.0), state.get("refund_amount", 0.0)
    g = gross if isinstance(gross, float) else 0.0
    r = refunded if isinstance(refunded, float) else 0.0
    return max(0.0, g - r)


def sample_values(states: Iterable[State], now_ms: float, params: ValueParams, horizon_days: float,
                  bands: tuple[tuple[str, float], ...]) -> dict[int, Sums]:
    """Every sampled member scored at ``now_ms``, summed per segment (customers without one skipped)."""
    out: dict[int, Sums] = {}
    high = bands[-1][0]
    for st in states:
        seg = st.get("seg")
        if not isinstance(seg, float):
            continue
        v = score_state(st, now_ms, params, horizon_days, bands=bands)
        s = out.setdefault(int(seg), Sums())
        s.n += 1
        s.risk += v.churn_risk
        s.purchases += v.expected_purchases
        s.ltv += v.lifetime_value
        if v.risk_band == high:
            s.high += 1
            s.spend_at_risk += _net_spend(st)
    return out


def segment_values(sums: Mapping[int, Sums], sizes: Mapping[int, int],
                   previous_sizes: Mapping[int, int], window_s: float | None, params: ValueParams,
                   horizon_days: float, currency: str) -> dict[int, SegmentValue]:
    """The catalog's value of every sampled segment; totals scale the sample to the live size."""
    out = {}
    for sid, s in sums.items():
        if s.n == 0:
            continue
        size = sizes.get(sid, s.n)
        scale = size / s.n
        before = previous_sizes.get(sid)
        out[sid] = SegmentValue(
            customers=size, sampled=s.n, mean_churn_risk=s.risk / s.n, high_risk_share=s.high / s.n,
            mean_expected_purchases=s.purchases / s.n, mean_lifetime_value=s.ltv / s.n,
            total_lifetime_value=s.ltv * scale, value_at_risk=s.spend_at_risk * scale,
            net_inflow=None if before is None else size - before,
            window_s=None if before is None else window_s, horizon_days=horizon_days,
            currency=currency, params_version=params.version)
    return out
