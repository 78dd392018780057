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

The rates come from one pair of windows, so part of every step's change is
sampling noise: on a steady population all of it. Each step's change of a
segment's share is therefore shrunk towards no change by how much of it is
noise (:func:`shrink_change`, a positive-part James-Stein factor with the
variance of the step's rate estimates), and the second step starts from the
shrunk first one.

A leader's merge or re-fit makes a new model version, which assigns a customer at
its next event, possibly elsewhere than the version before it did. Where the
current window holds customers an older version assigned, the chain starts from
the window as the current model reads their inputs (:attr:`Flows.start`): the
re-assignments still to come are a one-off of the model change, taken once (the
persistence factor below does not damp it), not migration. The moves between
the two windows stay as observed, re-assignments included: leaving those out
measured worse (docs/model.md, migration forecast).

Sampling noise is not the only reason a change does not go on: a one-off (a
block of customers moving or going silent once) is well above the noise and
still over after a window. The two-window forecast's change is therefore scaled
by a persistence factor ``phi`` in [0, 1] (a damped trend), estimated from the
monitor's own past reports (:class:`Persistence`): how much of each past
report's one-window forecast change the window that followed really showed.

>>> f = Flows.build({"a": (0, 0), "b": (0, 1), "c": (1, 0)},   # reference: customer -> (segment, recency)
...                 {"a": (0, 0), "c": (0, 1), "d": (1, 0)},   # current: b gone, c moved, d arrived
...                 [0, 1], span=2)
>>> f.now.tolist(), f.exits.tolist(), f.arrivals.tolist()
([[1.0, 1.0], [1.0, 0.0]], [1.0, 0.0], [0.0, 1.0])
>>> [s.round(3).tolist() for s in f.forecast()]
[[0.667, 0.333], [0.667, 0.333]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: how many windows ahead the report forecasts
HORIZONS = 2
#: customers' worth of weight of the all-segment keep rate at a recency in a segment's own
PRIOR = 10.0
#: the persistence factor before any evidence: half of a forecast change goes on
PERSISTENCE_PRIOR = 0.5
#: the prior's weight in squared shares: the evidence of one segment's 10-point forecast change
PERSISTENCE_WEIGHT = 0.01
#: the persistence factor is estimated over this many latest pairs (a week of daily reports)
PERSISTENCE_PAIRS = 7
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
    #: the current window's customers by segment and recency as the current model assigns
    #: them (None: as assigned). Where the window holds customers assigned by an older
    #: model version, the current one re-assigns them at their next event: a one-off of
    #: the model change, which the chain takes once, by stepping from these
    start: np.ndarray | None = None

    @classmethod
    def build(cls, reference: Window, current: Window, sids: Sequence[int], span: int,
              reread: Mapping[str, int] | None = None) -> Flows:
        """Count the paths of every customer active in either window. ``reread``: customers
        of the current window assigned by an older version than the current model -> the
        segment the current model assigns them (see :attr:`start`)."""
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
        start = None
        if reread:
            start = np.zeros((k, span))
            for cid, (seg, age) in current.items():
                start[pos.get(reread.get(cid, seg), pos[seg]), min(age, span - 1)] += 1
        return cls(tuple(sids), now, before, kept, moves, arrivals, start)

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

    def step(self) -> tuple[np.ndarray, np.ndarray]:
        """The chain's customers per segment one window ahead and their sampling variance.

        The variance is that of the rates' estimates, by the delta method: binomial for
        each keep rate (over its reference customers plus ``PRIOR``), multinomial for each
        segment's destinations (over its kept customers), Poisson for the arrivals."""
        q, dest = self.keep_rates(), self.destinations()
        now = self.now if self.start is None else self.start
        kept = (now * q).sum(1)
        var_kept = (now ** 2 * q * (1 - q) / (self.before + PRIOR)).sum(1)
        movers = self.moves.sum(1, keepdims=True)
        var_dest = np.where(movers > 0, dest * (1 - dest) / np.maximum(movers, 1.0), 0.0)
        var = (dest ** 2 * var_kept[:, None] + kept[:, None] ** 2 * var_dest).sum(0)
        return kept @ dest + self.arrivals, var + self.arrivals

    def chain_step(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``counts`` stepped once with :meth:`chain` and the arrivals, with the sampling
        variance of the chain's rates (binomial over each segment's reference customers)
        and of the arrivals (Poisson)."""
        p, before = self.chain(), self.before.sum(1, keepdims=True)
        var_p = np.where(before > 0, p * (1 - p) / np.maximum(before, 1.0), 0.0)
        return counts @ p + self.arrivals, (counts[:, None] ** 2 * var_p).sum(0) + self.arrivals

    def forecast(self, horizons: int = HORIZONS, *, shrink: bool = True,
                 persistence: float = 1.0) -> list[np.ndarray]:
        """Segment shares of the customers one, two, ... ``horizons`` windows ahead.

        Each step is the chain's (:meth:`step`, then :meth:`chain_step`), its change
        shrunk by :func:`shrink_change` unless ``shrink`` is false. "Now" is :attr:`start`
        where the window was read with the current model, else the window as assigned.
        The change from now to ``h`` windows ahead, for ``h`` >= 2, is then scaled by
        ``persistence ** (h - 1)`` (see :class:`Persistence`); the one-window forecast is
        the chain's."""
        if not self.now.sum():
            return [np.zeros(len(self.sids)) for _ in range(horizons)]
        counts, var = self.step()
        base = self.size if self.start is None else self.start.sum(1)
        out = [shrink_change(base, counts, var) if shrink else counts]
        while len(out) < horizons:
            counts, var = self.chain_step(out[-1])
            out.append(shrink_change(out[-1], counts, var) if shrink else counts)
        shares = [s / s.sum() if s.sum() else s for s in out]
        now = base / base.sum()
        return [shares[0]] + [now + persistence ** h * (s - now) for h, s in enumerate(shares[1:], 1)]


def persistence(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """How much of a forecast change goes on: the least-squares slope of the realised
    changes on the forecast ones over ``pairs`` (forecast change, realised change; one
    vector over segments each), through the origin, with :data:`PERSISTENCE_PRIOR` as
    :data:`PERSISTENCE_WEIGHT` of evidence, clipped to [0, 1].

    >>> round(persistence([(np.array([0.1, -0.1]), np.array([0.1, -0.1]))] * 5), 3)   # went on
    0.955
    >>> round(persistence([(np.array([0.1, -0.1]), np.array([0.0, 0.0]))] * 5), 3)    # did not
    0.045
    >>> persistence([])
    0.5
    """
    num, den = PERSISTENCE_WEIGHT * PERSISTENCE_PRIOR, PERSISTENCE_WEIGHT
    for forecast, realised in pairs:
        num, den = num + float(forecast @ realised), den + float(forecast @ forecast)
    return min(1.0, max(0.0, num / den))


class Persistence:
    """The persistence factor of one window length's forecasts, from its past reports.

    At each report (:meth:`observe`) the window's segment shares are the outcome of
    the one-window forecast made ``span`` slots before; the factor is
    :func:`persistence` over the last :data:`PERSISTENCE_PAIRS` such pairs, so it
    follows what the population did lately and knows nothing after the report.
    Holds the reports of the last ``span + PERSISTENCE_PAIRS`` slot boundaries.

    >>> p = Persistence(span=1)
    >>> p.observe(0, {0: 0.5, 1: 0.5}); p.forecast_made(0, {0: 0.6, 1: 0.4})
    0.5
    >>> round(p.observe(1, {0: 0.5, 1: 0.5}), 3)   # the forecast 10-point move did not come
    0.167
    """

    def __init__(self, span: int) -> None:
        self.span = span
        self.shares: dict[int, Mapping[int, float]] = {}  # boundary -> segment shares
        self.ahead: dict[int, Mapping[int, float]] = {}  # boundary -> its one-window forecast
        #: the pairs the last factor rests on (0: the prior alone), for the report
        self.pairs = 0

    def observe(self, boundary: int, shares: Mapping[int, float]) -> float:
        """Record the window ending at ``boundary``; the factor from the pairs seen by then."""
        self.shares[boundary] = shares
        for old in [b for b in self.shares if b < boundary - self.span - PERSISTENCE_PAIRS]:
            self.shares.pop(old)
            self.ahead.pop(old, None)
        matured = [b for b in sorted(self.ahead)
                   if b + self.span <= boundary and b + self.span in self.shares][-PERSISTENCE_PAIRS:]
        self.pairs = len(matured)
        return persistence(_changes(self.shares[b], self.ahead[b], self.shares[b + self.span])
                           for b in matured)

    def forecast_made(self, boundary: int, ahead: Mapping[int, float]) -> None:
        """The one-window forecast of the window ending at ``boundary``."""
        self.ahead[boundary] = ahead


def _changes(start: Mapping[int, float], forecast: Mapping[int, float],
             realised: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Forecast and realised change of each segment's share from ``start`` (0 where absent)."""
    sids = sorted(set(start) | set(forecast) | set(realised))
    base = np.array([start.get(s, 0.0) for s in sids])
    return (np.array([forecast.get(s, 0.0) for s in sids]) - base,
            np.array([realised.get(s, 0.0) for s in sids]) - base)


def shrink_change(start: np.ndarray, counts: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``counts`` (a step of the chain from ``start``, with sampling variance ``var``)
    with each segment's change of share shrunk towards no change by how much of it is
    noise: the positive-part James-Stein factor ``max(0, 1 - var / change**2)``, the
    variance taken to shares by the total. A change within its noise is dropped, one
    several times its noise is kept almost whole. Returns counts of the same total.

    >>> shrink_change(np.array([50.0, 50.0]), np.array([52.0, 48.0]), np.array([40.0, 40.0])).tolist()
    [50.0, 50.0]
    >>> shrink_change(np.array([50.0, 50.0]), np.array([70.0, 30.0]), np.array([40.0, 40.0])).round(6).tolist()
    [68.0, 32.0]
    """
    total = counts.sum()
    if not total or not start.sum():
        return counts
    before, after = start / start.sum(), counts / total
    change = after - before
    keep = np.clip(1 - var / total ** 2 / np.maximum(change ** 2, 1e-18), 0.0, 1.0)
    shares = np.clip(before + keep * change, 0.0, None)
    return np.asarray(total * shares / shares.sum())


def mean_abs_error(predicted: Mapping[int, float], actual: Mapping[int, float]) -> float:
    """Mean absolute error in share points (0-100) over the segments of either.

    >>> mean_abs_error({0: 0.5, 1: 0.5}, {0: 0.4, 1: 0.5, 2: 0.1})
    6.666666666666667
    """
    sids = set(predicted) | set(actual)
    if not sids:
        return 0.0
    return 100.0 * sum(abs(predicted.get(s, 0.0) - actual.get(s, 0.0)) for s in sids) / len(sids)
