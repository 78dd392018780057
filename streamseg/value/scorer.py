"""The value model one process scores with: the latest published parameters and the settings.

Workers adopt the parameters the leader publishes on the model topic; ``streamseg api``
and ``streamseg inspect`` read the copy the leader keeps in Redis. Scoring is pure.

>>> from streamseg.timeunits import DAY_MS
>>> scorer = ValueScorer(horizon_days=90.0, bands=(("low", 0.0), ("high", 0.8)), currency="EUR")
>>> scorer.body({"first_purchase_ts": 0.0, "last_purchase_ts": 0.0}, DAY_MS) is None  # nothing fitted
True
>>> scorer.adopt(ValueParams(r=0.25, alpha=4.4, a=0.79, b=2.4, p=6.2, q=3.7, v=15.4, version=2))
True
>>> scorer.body({"first_purchase_ts": 0.0, "last_purchase_ts": 0.0}, DAY_MS)["risk_band"]
'low'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from streamseg.value.params import ValueParams
from streamseg.value.score import (
    DEFAULT_BANDS,
    ActiveDays,
    BandedValue,
    CustomerValue,
    State,
    band,
    banded_state,
    churn_risk,
    score_state,
)

if TYPE_CHECKING:
    from streamseg.settings import Settings


class ValueScorer:
    """Scores customers with the newest :class:`ValueParams` adopted (None until the first fit)."""

    def __init__(self, *, horizon_days: float = 90.0,
                 bands: tuple[tuple[str, float], ...] = DEFAULT_BANDS, currency: str = "",
                 band_margin: float = 0.0) -> None:
        self.horizon_days = horizon_days
        self.band_margin = band_margin
        self.bands = bands
        self.currency = currency
        self.params: ValueParams | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ValueScorer:
        return cls(horizon_days=settings.value_horizon_days, bands=settings.value_bands,
                   currency=settings.reporting_currency, band_margin=settings.value_band_margin)

    @property
    def high_band(self) -> str:
        """The name of the highest-risk band (what alerts watch)."""
        return self.bands[-1][0]

    @property
    def version(self) -> int | None:
        """The version of the parameters in hand (None until the first fit)."""
        return None if self.params is None else self.params.version

    def risk_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Churn risk and whether it is in the highest band (the plain band, no margin) of
        summary rows (frequency, recency, T, then optionally the active days' frequency,
        recency, T; NaN there: none) with the parameters in hand: what the drift monitor
        re-scores a window's customers with after a re-fit (see :mod:`streamseg.drift.risk`).

        >>> s = ValueScorer(bands=(("low", 0.0), ("high", 0.8)))
        >>> _ = s.adopt(ValueParams(r=0.25, alpha=4.4, a=0.79, b=2.4, p=6.2, q=3.7, v=15.4))
        >>> risk, high = s.risk_rows(np.array([[2.0, 30.0, 38.0], [2.0, 30.0, 200.0]]))
        >>> risk.round(3).tolist(), high.tolist()
        ([0.327, 0.959], [False, True])
        """
        if self.params is None:
            raise ValueError("no value parameters to re-score with: adopt a fit first")
        prm, horizon = self.params, self.horizon_days
        risk = np.array([churn_risk(row[0], row[1], row[2], prm, horizon, _active(row[3:6]))
                         for row in rows.tolist()], dtype=float)
        high = np.array([band(r, self.bands) == self.high_band for r in risk.tolist()], dtype=bool)
        return risk, high

    def adopt(self, params: ValueParams) -> bool:
        """Score with ``params`` from now on, unless they are older than those in hand."""
        if self.params is not None and params.version < self.params.version:
            return False
        self.params = params
        return True

    def adopt_json(self, raw: bytes | str | None) -> bool:
        """:meth:`adopt` stored or published JSON (None or empty: nothing to adopt)."""
        return bool(raw) and self.adopt(ValueParams.from_json(raw))  # type: ignore[arg-type]

    def value(self, state: State, now_ms: float) -> CustomerValue | None:
        """One customer's value at ``now_ms`` (None until parameters were fitted)."""
        if self.params is None:
            return None
        return score_state(state, now_ms, self.params, self.horizon_days, currency=self.currency,
                           bands=self.bands)

    def banded(self, state: State, now_ms: float) -> BandedValue | None:
        """:meth:`value` with the band to publish: the stored one (``val_band``) kept until the
        risk is ``band_margin`` past a boundary (:func:`~streamseg.value.score.next_band`).
        Only the risk and band are computed now; the rest when the value is published."""
        if self.params is None:
            return None
        return banded_state(state, now_ms, self.params, self.horizon_days, currency=self.currency,
                            bands=self.bands, band_margin=self.band_margin)

    def body(self, state: State, now_ms: float) -> dict[str, Any] | None:
        """The ``value`` object of a customer body (see docs/value.md)."""
        v = self.value(state, now_ms)
        return None if v is None else v.to_dict()


def _active(row: list[float]) -> ActiveDays | None:
    """The active-day summary of a re-scored row's last three columns (None: absent or NaN)."""
    if len(row) < 3 or any(math.isnan(v) for v in row):
        return None
    return ActiveDays(row[0], row[1], row[2])
