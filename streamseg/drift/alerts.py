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

from collections.abc import Mapping
from dataclasses import dataclass

from streamseg.drift.report import Alert

#: Alert names, in report order; Prometheus rules use the same names.
ALERT_NAMES = ("composition_shift", "segment_psi", "feature_psi", "emerging_segment",
               "population_shrink")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Levels above which a window alerts (defaults as documented in the README)."""

    composition_shift: float = 0.15
    segment_psi: float = 0.2
    feature_psi: float = 0.2
    emerging_share: float = 0.15
    population_shrink: float = 0.15

    def by_alert(self) -> dict[str, float]:
        return {"composition_shift": self.composition_shift, "segment_psi": self.segment_psi,
                "feature_psi": self.feature_psi, "emerging_segment": self.emerging_share,
                "population_shrink": self.population_shrink}


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
