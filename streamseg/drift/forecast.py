"""Markov forecast of each segment's customers one and two windows ahead.

A segment's size in a window is the number of customers active in it whose last
assignment in the window was that segment (each customer once). Between the
reference window and the current one every customer takes one of three paths:
*kept* (active in both: from its reference segment ``i`` to its current one
``j``), *gone* (active in the reference only: an exit from ``i``) or *arrived*
(active in the current window only: new, or back after a silence). That is an
open Markov chain with an absorbing "gone" state and an arrival vector:

    next = sum over (segment i, recency r) of now[i, r] * keep[i, r] * moves[i] + arrivals

``now[i, r]``: customers of segment ``i`` whose last activity in the window was
``r`` slots before its end (slots are the shortest window, e.g. a day for weekly
windows); ``keep[i, r]``: the share of the reference window's customers of
segment ``i`` and recency ``r`` still active in the current one (shrunk towards
the share over all segments at that recency, as ``PRIOR`` customers' worth of
evidence); ``moves[i]``: where segment ``i``'s kept customers went; arrivals as
in the current window. Recency is what makes exits foreseeable: a customer
silent for the last days of a window is less likely to come back, and a persona
going silent shows as customers of one segment with long silences before the
window that counts their exit. Two windows ahead steps the forecast once more
with the segment-level chain (kept and exit rates per segment, without recency,
which the forecast customers do not have) and the same arrivals.

>>> f = Flows.build({"a": (0, 0), "b": (0, 1), "c": (1, 0)},   # reference: customer -> (segment, recency)
...                 {"a": (0, 0), "c": (0, 1), "d": (1, 0)},   # current: b gone, c moved, d arrived
...                 [0, 1], span=2)
>>> f.now.tolist(), f.exits.tolist(), f.arrivals.tolist()
([[1.0, 1.0], [1.0, 0.0]], [1.0, 0.0], [0.0, 1.0])
>>> [s.round(3).tolist() for s in f.forecast()]
[[0.667, 0.333], [0.667, 0.333]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: how many windows ahead the report forecasts
HORIZONS = 2
#: customers' worth of weight of the all-segment keep rate at a recency in a segment's own
PRIOR = 10.0
#: a window's customers: id -> (segment last assigned, slots from its last activity to the window's end)
Window = Mapping[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Flows:
    """How customers went from the reference window to the current one, per segment.

    Arrays over ``sids`` (and recency 0 .. span - 1): ``now`` and ``before``: the
    current and reference windows' customers by segment and recency; ``kept``: the
    reference customers (by segment and recency) active in the current window too;
    ``moves[i, j]``: kept customers from segment ``i`` to ``j``; ``arrivals``: the
    current window's customers not active in the reference one, by segment."""

    sids: tuple[int, ...]
    now: np.ndarray
    before: np.ndarray
    kept: np.ndarray
    moves: np.ndarray
    arrivals: np.ndarray

    @classmethod
    def build(cls, reference: Window, current: Window, sids: Sequence[int], span: int) -> Flows:
        """Count the paths of every customer active in either window."""
        pos = {s: i for i, s in enumerate(sids)}
        k = len(sids)
        now, before, kept = np.zeros((k, span)), np.zeros((k, span)), np.zeros((k, span))
        moves, arrivals = np.zeros((k, k)), np.zeros(k)
        for seg, age in current.values():
            now[pos[seg], min(age, span - 1)] += 1
        for cid, (seg, age) in reference.items():
            i, r = pos[seg], min(age, span - 1)
            before[i, r] += 1
            if cid in current:
                kept[i, r] += 1
                moves[i, pos[current[cid][0]]] += 1
        for cid, (seg, _) in current.items():
            if cid not in reference:
                arrivals[pos[seg]] += 1
        return cls(tuple(sids), now, before, kept, moves, arrivals)

    @property
    def size(self) -> np.ndarray:
        """Customers per segment in the current window."""
        return np.asarray(self.now.sum(1))

    @property
    def exits(self) -> np.ndarray:
        """Reference customers per segment not active in the current window."""
        return np.asarray((self.before - self.kept).sum(1))

    def keep_rates(self) -> np.ndarray:
        """Share of the reference customers kept, per segment and recency (see the module doc)."""
        pooled = self.kept.sum(0) / np.maximum(self.before.sum(0), 1e-12)
        return (self.kept + PRIOR * pooled) / (self.before + PRIOR)

    def destinations(self) -> np.ndarray:
        """Row ``i``: where segment ``i``'s kept customers went (identity where none were kept)."""
        rows = self.moves.sum(1, keepdims=True)
        return np.where(rows > 0, self.moves / np.where(rows > 0, rows, 1.0), np.eye(len(self.sids)))

    def chain(self) -> np.ndarray:
        """Segment-level transition matrix without recency: row ``i`` sums to segment ``i``'s
        keep rate (the rest goes to "gone"); a segment with no reference customers keeps all."""
        before = self.before.sum(1, keepdims=True)
        return np.where(before > 0, self.moves / np.where(before > 0, before, 1.0),
                        np.eye(len(self.sids)))

    def forecast(self, horizons: int = HORIZONS) -> list[np.ndarray]:
        """Segment shares of the customers one, two, ... ``horizons`` windows ahead."""
        if not self.now.sum():
            return [np.zeros(len(self.sids)) for _ in range(horizons)]
        n = (self.now * self.keep_rates()).sum(1) @ self.destinations() + self.arrivals
        out = [n]
        p = self.chain()
        while len(out) < horizons:
            out.append(out[-1] @ p + self.arrivals)
        return [s / s.sum() if s.sum() else s for s in out]


def mean_abs_error(predicted: Mapping[int, float], actual: Mapping[int, float]) -> float:
    """Mean absolute error in share points (0-100) over the segments of either.

    >>> mean_abs_error({0: 0.5, 1: 0.5}, {0: 0.4, 1: 0.5, 2: 0.1})
    6.666666666666667
    """
    sids = set(predicted) | set(actual)
    if not sids:
        return 0.0
    return 100.0 * sum(abs(predicted.get(s, 0.0) - actual.get(s, 0.0)) for s in sids) / len(sids)
