"""Churn risk in the drift windows: how many customers are at risk, per segment, and what
they have spent.

Once the value model is fitted, every customer the engine assigns carries its churn risk
and its published risk band (:mod:`streamseg.value`). The monitor adds them per slot and
segment: customer updates scored, the sum (and sum of squares) of their churn risk, how
many are in the highest band, the net spend to date of those (the value at risk, as the
catalog counts it), and the customers whose published band moved into or out of the
highest band. Sums add up across slots, so a window is the sum of its slots.

Every figure is a level per customer update scored (a customer counts once per batch it
appears in, as the window's ``customers``), so the two windows compare whatever their
size; moves into the highest band are counted from the band published before, so a
customer's first band (after the first fit) is no move.

>>> slot: RiskSlot = {}
>>> observe(slot, [1, 1, 2], [(0.9, "high", "low", 300.0), (0.2, "low", "low", 50.0),
...                           (0.85, "high", "high", 80.0)], "high")
>>> slot[1].scored, slot[1].high, slot[1].entered, slot[1].at_risk_spend
(2, 1, 1, 300.0)
>>> w = total(window([slot, slot]))
>>> w.scored, w.high, w.entered, round(w.mean_risk, 3)
(6, 4, 2, 0.65)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from streamseg.drift.report import SegmentRisk

#: (churn risk, band published now, band published before or None, net spend to date)
Observation = tuple[float, str, str | None, float]


@dataclass(slots=True)
class RiskSums:
    """One segment's scored customer updates (in a slot or a window), as sums."""

    scored: int = 0
    risk: float = 0.0
    risk_sq: float = 0.0
    high: int = 0
    at_risk_spend: float = 0.0  # net spend to date of the updates in the highest band
    at_risk_spend_sq: float = 0.0
    entered: int = 0  # published band moved into the highest band
    left: int = 0  # and out of it

    def add(self, other: RiskSums) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def mean_risk(self) -> float:
        return self.risk / self.scored if self.scored else 0.0

    @property
    def high_share(self) -> float:
        return self.high / self.scored if self.scored else 0.0

    @property
    def at_risk_per_customer(self) -> float:
        """Net spend to date of the high-band updates per update scored."""
        return self.at_risk_spend / self.scored if self.scored else 0.0

    def var_of_mean(self, total: float, squares: float) -> float:
        """Variance of the mean of a per-update quantity with this ``total`` and sum of
        ``squares`` over :attr:`scored` updates."""
        if self.scored < 2:
            return math.inf
        mean = total / self.scored
        return max(0.0, squares / self.scored - mean * mean) / self.scored


#: segment id -> sums
RiskSlot = dict[int, RiskSums]


def observe(slot: RiskSlot, segment_ids: Sequence[int], seen: Sequence[Observation | None],
            high_band: str) -> None:
    """Add one batch's scored customers (None: not scored, no value model yet)."""
    for sid, obs in zip(segment_ids, seen, strict=True):
        if obs is None:
            continue
        risk, band, before, spend = obs
        s = slot.setdefault(int(sid), RiskSums())
        s.scored += 1
        s.risk += risk
        s.risk_sq += risk * risk
        if band == high_band:
            s.high += 1
            s.at_risk_spend += spend
            s.at_risk_spend_sq += spend * spend
            s.entered += before is not None and before != high_band
        elif before == high_band:
            s.left += 1


def window(slots: Iterable[RiskSlot]) -> RiskSlot:
    """The sums of several slots, per segment."""
    out: RiskSlot = {}
    for slot in slots:
        for sid, s in slot.items():
            out.setdefault(sid, RiskSums()).add(s)
    return out


def total(w: RiskSlot) -> RiskSums:
    """Every segment's sums added."""
    out = RiskSums()
    for s in w.values():
        out.add(s)
    return out


def report_fields(cur: RiskSlot, ref: RiskSlot, names: Mapping[int, str]) -> dict[str, Any]:
    """The report's churn-risk figures (none while neither window holds a scored update)."""
    c, r = total(cur), total(ref)
    if not c.scored and not r.scored:
        return {}
    return {
        "high_risk_share": c.high_share if c.scored else None,
        "reference_high_risk_share": r.high_share if r.scored else None,
        "entered_high_risk": c.entered, "left_high_risk": c.left,
        "value_at_risk_per_customer": c.at_risk_per_customer if c.scored else None,
        "reference_value_at_risk_per_customer": r.at_risk_per_customer if r.scored else None,
        "risk": [segment_risk(sid, cur.get(sid, RiskSums()), ref.get(sid), names)
                 for sid in sorted(set(cur) | set(ref))],
    }


def segment_risk(sid: int, c: RiskSums, r: RiskSums | None, names: Mapping[int, str]) -> SegmentRisk:
    """One segment's churn-risk figures in the window (``r``: the reference window's)."""
    ref = r if r is not None and r.scored else None
    return SegmentRisk(
        segment_id=sid, name=names.get(sid, f"Segment {sid}"), scored=c.scored,
        mean_churn_risk=c.mean_risk, high_risk_share=c.high_share,
        value_at_risk_per_customer=c.at_risk_per_customer,
        reference_scored=ref.scored if ref else 0,
        reference_mean_churn_risk=ref.mean_risk if ref else None,
        reference_high_risk_share=ref.high_share if ref else None,
        entered_high_risk=c.entered, left_high_risk=c.left)
