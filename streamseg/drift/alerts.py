"""Documented drift thresholds and the alerts a window raises when it crosses them.

Each alert's text says what moved, by how much, and which segments it touches
(``touched``: the segments whose share moved most; ``lapsed``: those that lost
the most active customers).

>>> t = Thresholds()
>>> [a.alert for a in evaluate(t, composition_shift=0.2, psi=0.05, feature_psi={"x": 0.3},
...                            emerging_share=0.01)]
['composition_shift', 'feature_psi']
>>> (a,) = evaluate(t, composition_shift=0.0, psi=0.0, feature_psi={}, emerging_share=0.0,
...                 shrink=0.3, lapsed="Window shoppers -300 (-75%)")
>>> a.detail
'30.0% fewer active customers than in the reference window; lost most: Window shoppers -300 (-75%)'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from streamseg.drift.report import Alert
from streamseg.drift.risk import RiskSlot, RiskSums, total

#: Alert names, in report order; Prometheus rules use the same names.
ALERT_NAMES = ("composition_shift", "segment_psi", "feature_psi", "emerging_segment",
               "population_shrink", "high_risk_share", "segment_churn_risk", "value_at_risk")
#: A churn-risk rise alerts only when it is also this many standard errors: windows of a
#: few hundred scored updates vary by several points by chance alone.
Z_MIN = 3.0
#: A segment's mean churn risk is compared only with this many scored updates in both windows.
MIN_SCORED = 30


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Levels above which a window alerts (defaults as documented in the README)."""

    composition_shift: float = 0.15
    segment_psi: float = 0.2
    feature_psi: float = 0.2
    emerging_share: float = 0.15
    population_shrink: float = 0.15
    high_risk_share: float = 0.05  # rise, in share points
    segment_churn_risk: float = 0.10  # rise of a segment's mean churn risk
    value_at_risk: float = 0.25  # relative rise of the high band's share of spend to date

    def by_alert(self) -> dict[str, float]:
        return {"composition_shift": self.composition_shift, "segment_psi": self.segment_psi,
                "feature_psi": self.feature_psi, "emerging_segment": self.emerging_share,
                "population_shrink": self.population_shrink,
                "high_risk_share": self.high_risk_share,
                "segment_churn_risk": self.segment_churn_risk, "value_at_risk": self.value_at_risk}


def evaluate(
    t: Thresholds, *, composition_shift: float, psi: float, feature_psi: Mapping[str, float],
    emerging_share: float, segments: bool = True, shrink: float = 0.0, touched: str = "",
    lapsed: str = "",
) -> list[Alert]:
    """Alerts crossing ``t``; ``segments=False`` leaves out the segment-level ones
    (composition_shift, segment_psi, emerging_segment): feature PSI and the
    population shrink (both model-independent) only.

    >>> [a.alert for a in evaluate(Thresholds(), composition_shift=0.9, psi=0.9,
    ...                            feature_psi={"x": 0.3}, emerging_share=0.9, segments=False)]
    ['feature_psi']
    """
    moved = f"; segments moving most: {touched}" if touched else ""
    alerts = []
    if segments and composition_shift > t.composition_shift:
        alerts.append(Alert(alert="composition_shift", value=composition_shift,
                            threshold=t.composition_shift,
                            detail=f"{composition_shift:.1%} of customers would have to change "
                            f"segment to restore the reference mix{moved}"))
    if segments and psi > t.segment_psi:
        alerts.append(Alert(alert="segment_psi", value=psi, threshold=t.segment_psi,
                            detail=f"segment shares PSI {psi:.3f}{moved}"))
    drifted = {f: v for f, v in feature_psi.items() if v > t.feature_psi}
    if drifted:
        worst = max(drifted, key=drifted.__getitem__)
        alerts.append(Alert(alert="feature_psi", value=drifted[worst], threshold=t.feature_psi,
                            detail=f"{len(drifted)} model input(s) shifted, most {worst} "
                            f"(PSI {drifted[worst]:.3f}): " + ", ".join(sorted(drifted)) + moved))
    if segments and emerging_share > t.emerging_share:
        alerts.append(Alert(alert="emerging_segment", value=emerging_share,
                            threshold=t.emerging_share,
                            detail=f"{emerging_share:.1%} of customers are far from every centre "
                            f"(near no segment){moved}"))
    if shrink > t.population_shrink:
        alerts.append(Alert(alert="population_shrink", value=shrink,
                            threshold=t.population_shrink,
                            detail=f"{shrink:.1%} fewer active customers than in the reference "
                            "window" + (f"; lost most: {lapsed}" if lapsed else "")))
    return alerts


def value_alerts(t: Thresholds, cur: RiskSlot, ref: RiskSlot, names: Mapping[int, str],
                 currency: str = "") -> list[Alert]:
    """Churn-risk alerts of a window against its reference (see :mod:`.risk`): the share of
    customers in the highest band, a segment's mean churn risk, or the highest band's share
    of the spend to date (the value at risk; a share, so a population that only ages does
    not raise it) rose past its threshold (and by ``Z_MIN`` standard errors). None while
    either window has no scored update."""
    c, r = total(cur), total(ref)
    if not c.scored or not r.scored:
        return []
    out = []
    rise = c.high_share - r.high_share
    if rise > t.high_risk_share and _z(rise, _var_share(c, r)) >= Z_MIN:
        out.append(Alert(alert="high_risk_share", value=rise, threshold=t.high_risk_share,
                         detail=f"customers at high risk of leaving rose from {r.high_share:.1%} "
                         f"to {c.high_share:.1%} of the customers seen (+{rise * 100:.1f} points); "
                         f"{c.entered:,} moved into the high-risk band in the window; rising "
                         f"most: {_most(cur, ref, names, lambda s: s.high_share, '.1%')}"))
    out += _segment_churn(t, cur, ref, names)
    out += _value_at_risk(t, cur, ref, names, currency)
    return out


def _value_at_risk(t: Thresholds, cur: RiskSlot, ref: RiskSlot, names: Mapping[int, str],
                   currency: str) -> list[Alert]:
    """The alert when the high band's share of the spend to date rose past the threshold
    (relative) and by ``Z_MIN`` standard errors."""
    c, r = total(cur), total(ref)
    before, now = r.value_at_risk_share, c.value_at_risk_share
    grew = now / before - 1.0 if before > 0 else 0.0
    if grew <= t.value_at_risk or _z(now - before, c.var_of_share() + r.var_of_share()) < Z_MIN:
        return []
    unit = f" {currency}" if currency else ""
    return [Alert(alert="value_at_risk", value=grew, threshold=t.value_at_risk,
                  detail=f"customers in the high-risk band hold {now:.1%} of the spend to date "
                  f"of the customers seen, up from {before:.1%} (+{grew:.0%}; "
                  f"{r.at_risk_per_customer:,.2f} -> {c.at_risk_per_customer:,.2f}{unit} per "
                  f"customer seen): more of what customers spent is with those likely to leave; "
                  f"rising most: {_most(cur, ref, names, lambda s: s.value_at_risk_share, '.1%')}")]


def _segment_churn(t: Thresholds, cur: RiskSlot, ref: RiskSlot,
                   names: Mapping[int, str]) -> list[Alert]:
    """One alert naming every segment whose mean churn risk rose past the threshold."""
    risen = []
    for sid in sorted(set(cur) & set(ref)):
        c, r = cur[sid], ref[sid]
        if c.sampled < MIN_SCORED or r.sampled < MIN_SCORED:
            continue
        rise = c.mean_risk - r.mean_risk
        spread = c.var_of_mean(c.risk, c.risk_sq) + r.var_of_mean(r.risk, r.risk_sq)
        if rise > t.segment_churn_risk and _z(rise, spread) >= Z_MIN:
            risen.append((rise, sid))
    if not risen:
        return []
    risen.sort(reverse=True)
    said = ", ".join(f"{names.get(s, f'Segment {s}')} {ref[s].mean_risk:.2f} -> "
                     f"{cur[s].mean_risk:.2f} ({cur[s].entered:,} moved into the high-risk band)"
                     for _, s in risen)
    return [Alert(alert="segment_churn_risk", value=risen[0][0], threshold=t.segment_churn_risk,
                  detail=f"mean churn risk (chance of no purchase within the horizon) rose in "
                  f"{len(risen)} segment(s): {said}")]


def _most(cur: RiskSlot, ref: RiskSlot, names: Mapping[int, str],
          figure: Callable[[RiskSums], float], fmt: str, top: int = 3) -> str:
    """The segments whose ``figure`` rose most, with both values and the moves into the band."""
    empty = RiskSums()
    rises = sorted(((figure(cur[s]) - figure(ref.get(s, empty)), s) for s in cur), reverse=True)
    return ", ".join(f"{names.get(s, f'Segment {s}')} {figure(ref.get(s, empty)):{fmt}} -> "
                     f"{figure(cur[s]):{fmt}} ({cur[s].entered:,} moved in)"
                     for d, s in rises[:top] if d > 0) or "no single segment"


def _z(diff: float, var: float) -> float:
    if var <= 0:
        return math.inf if diff > 0 else 0.0
    return diff / math.sqrt(var)


def _var_share(c: RiskSums, r: RiskSums) -> float:
    """Variance of the difference of two shares in the highest band (pooled)."""
    p = (c.high + r.high) / (c.scored + r.scored)
    return p * (1 - p) * (1 / c.sampled + 1 / r.sampled)
