"""Churn risk in the drift windows: how many customers are at risk, per segment, and what
they have spent.

Once the value model is fitted, every customer the engine assigns carries its churn risk
and its published risk band (:mod:`streamseg.value`). The monitor adds them per slot and
segment: customer updates scored, the sum (and sum of squares) of their churn risk, how
many are in the highest band, the net spend to date of those (the value at risk, as the
catalog counts it) and of all of them, and the customers whose published band moved into or out of the
highest band. Sums add up across slots, so a window is the sum of its slots.

Every figure is a level per customer update scored (a customer counts once per batch it
appears in, as the window's ``customers``), so the two windows compare whatever their
size; moves into the highest band are counted from the band published before, so a
customer's first band (after the first fit) is no move.

Spend to date grows with tenure by construction: a population that only ages holds more
of it every window, in and out of the highest band alike. So the value at risk is also
read as a share: the high band's spend to date over all the scored updates' spend to date
(:attr:`RiskSums.value_at_risk_share`), which ageing moves in numerator and denominator
alike, and which the ``value_at_risk`` alert compares.

A re-fit of the value parameters moves every customer's churn risk at once although no
customer changed. So each slot also keeps a bounded uniform sample of what its risks were
computed from (the summary: frequency, recency, T; the segment and the spend), and the
parameters' versions that scored them. When the two windows compared were scored with
more than one version, :meth:`RiskLedger.compare` re-scores both windows' samples with the
parameters in hand and compares those (``value_basis="rescored"``); without them it
holds the value alerts back (``"held"``), as :mod:`.monitor` does for a segment-model change.
The value alerts are held back too while the value model's first fit falls within the two
windows: their slots before the first scored one hold updates without a churn risk, so the
windows hold only the part scored after it (the customers the re-scoring sweep brings up to
date crowd into it).

>>> slot: RiskSlot = {}
>>> observe(slot, [1, 1, 2], [(0.9, "high", "low", 300.0), (0.2, "low", "low", 50.0),
...                           (0.85, "high", "high", 80.0)], "high")
>>> slot[1].scored, slot[1].high, slot[1].entered, slot[1].at_risk_spend
(2.0, 1.0, 1, 300.0)
>>> round(slot[1].value_at_risk_share, 3)  # 300 of the 350 its two updates have spent
0.857
>>> w = total(window([slot, slot]))
>>> w.scored, w.high, w.entered, round(w.mean_risk, 3)
(6.0, 4.0, 2, 0.65)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import numpy as np

from streamseg.drift.report import SegmentRisk
from streamseg.drift.windows import reservoir

#: (churn risk, band published now, band published before or None, net spend to date)
Observation = tuple[float, str, str | None, float]
#: what a churn risk was computed from: (value-parameters version, frequency, recency, T, and
#: the active days' frequency, recency, T, NaN when the customer had none counted)
Inputs = tuple[int, float, float, float, float, float, float]
Basis = Literal["scored", "rescored", "held"]


@dataclass(slots=True)
class RiskSums:
    """One segment's scored customer updates (in a slot or a window), as sums."""

    scored: float = 0.0  # updates (weighted, when re-scored from a sample)
    risk: float = 0.0
    risk_sq: float = 0.0
    high: float = 0.0
    at_risk_spend: float = 0.0  # net spend to date of the updates in the highest band
    at_risk_spend_sq: float = 0.0
    spend: float = 0.0  # net spend to date of every update scored
    spend_sq: float = 0.0
    entered: int = 0  # published band moved into the highest band
    left: int = 0  # and out of it
    sampled: int = 0  # updates the sums rest on (the variances' count)

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

    @property
    def value_at_risk_share(self) -> float:
        """The high-band updates' share of the net spend to date of all updates scored
        (0 while that spend is not positive)."""
        return self.at_risk_spend / self.spend if self.spend > 0 else 0.0

    def var_of_share(self) -> float:
        """Variance of :attr:`value_at_risk_share`, a ratio of two means (delta method): with
        a = an update's at-risk spend (its spend s in the high band, else 0), a * s = a * a,
        so the residual a - share * s needs only the sums of squares kept."""
        if self.sampled < 2 or self.spend <= 0:
            return math.inf
        share = self.value_at_risk_share
        residual = (self.at_risk_spend_sq * (1 - 2 * share) + share * share * self.spend_sq)
        mean_spend = self.spend / self.scored
        return max(0.0, residual / self.scored) / (mean_spend * mean_spend * self.sampled)

    def var_of_mean(self, total: float, squares: float) -> float:
        """Variance of the mean of a per-update quantity with this ``total`` and sum of
        ``squares`` over :attr:`scored` updates (resting on :attr:`sampled` of them)."""
        if self.sampled < 2:
            return math.inf
        mean = total / self.scored
        return max(0.0, squares / self.scored - mean * mean) / self.sampled


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
        s.sampled += 1
        s.risk += risk
        s.risk_sq += risk * risk
        s.spend += spend
        s.spend_sq += spend * spend
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
        "value_at_risk_share": c.value_at_risk_share if c.scored else None,
        "reference_value_at_risk_share": r.value_at_risk_share if r.scored else None,
        "risk": [segment_risk(sid, cur.get(sid, RiskSums()), ref.get(sid), names)
                 for sid in sorted(set(cur) | set(ref))],
    }


def segment_risk(sid: int, c: RiskSums, r: RiskSums | None, names: Mapping[int, str]) -> SegmentRisk:
    """One segment's churn-risk figures in the window (``r``: the reference window's)."""
    ref = r if r is not None and r.scored else None
    return SegmentRisk(
        segment_id=sid, name=names.get(sid, f"Segment {sid}"), scored=round(c.scored),
        mean_churn_risk=c.mean_risk, high_risk_share=c.high_share,
        value_at_risk_per_customer=c.at_risk_per_customer,
        value_at_risk_share=c.value_at_risk_share,
        reference_scored=round(ref.scored) if ref else 0,
        reference_mean_churn_risk=ref.mean_risk if ref else None,
        reference_high_risk_share=ref.high_share if ref else None,
        entered_high_risk=c.entered, left_high_risk=c.left)


class Rescorer(Protocol):
    """The value model in hand (:class:`~streamseg.value.scorer.ValueScorer`): its
    parameters' version, and the churn risk and highest-band membership of summary rows
    (frequency, recency, T) with them."""

    @property
    def version(self) -> int | None: ...

    def risk_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


#: (value-parameters version, slot) -> the slot's sample re-scored: (churn risk, in the high band)
RiskScored = dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]


@dataclass(slots=True)
class RiskSample:
    """A slot's scored updates, sampled: rows of (segment, frequency, recency, T, spend to
    date, active days' frequency, recency, T), out of ``seen``, and the value-parameter
    versions that scored the slot."""

    rows: np.ndarray | None = None
    seen: int = 0
    versions: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two windows' churn-risk sums on one footing, and which (see :meth:`RiskLedger.compare`)."""

    cur: RiskSlot
    ref: RiskSlot
    basis: Basis = "scored"
    note: str = ""


class RiskLedger:
    """The churn risks the monitor saw, per slot: sums, and samples to re-score them with.

    >>> ledger = RiskLedger("high", sample_size=100, rng=np.random.default_rng(0))
    >>> inputs = (2.0, 30.0, 38.0, 9.0, 35.0, 40.0)  # purchase days, then active days
    >>> ledger.observe(0, [1, 1], [(0.2, "low", "low", 10.0)] * 2, [(1, *inputs)] * 2)
    >>> ledger.observe(1, [1, 1], [(0.9, "high", "low", 10.0)] * 2, [(2, *inputs)] * 2)
    >>> ledger.compare(2, 1, None, {}).basis  # scored with v1, then v2: nothing to re-score with
    'held'
    """

    def __init__(self, high_band: str, sample_size: int, rng: np.random.Generator) -> None:
        self.high_band = high_band
        self.sample_size = sample_size
        self.rng = rng
        self.slots: dict[int, RiskSlot] = {}
        self.samples: dict[int, RiskSample] = {}
        #: slot (before the first scored one) -> customer updates seen without a value model
        self.unscored: Counter[int] = Counter()
        #: the first slot holding a scored update: the value model's first fit
        self.first_scored: int | None = None

    def observe(self, index: int, segment_ids: Sequence[int], seen: Sequence[Observation | None],
                inputs: Sequence[Inputs | None] | None = None) -> None:
        """Add a batch's scored updates to slot ``index``; ``inputs``: what each risk was
        computed from (None: not kept, so a re-fit is not seen)."""
        observe(self.slots.setdefault(index, {}), segment_ids, seen, self.high_band)
        if self.first_scored is None or index < self.first_scored:  # only slots before it count
            unscored = sum(o is None for o in seen)
            if unscored < len(seen):
                self.first_scored = index
            elif unscored:
                self.unscored[index] += unscored
        if inputs is None:
            return
        kept = [(sid, i[1], i[2], i[3], o[3], *i[4:7], i[0])
                for sid, o, i in zip(segment_ids, seen, inputs, strict=True)
                if o is not None and i is not None]
        if not kept:
            return
        s = self.samples.setdefault(index, RiskSample())
        s.versions.update(int(k[8]) for k in kept)
        s.rows = reservoir(s.rows, np.array([k[:8] for k in kept], dtype=float), s.seen,
                           self.sample_size, self.rng)
        s.seen += len(kept)

    def prune(self, keep_from: int) -> None:
        """Forget the slots before ``keep_from``."""
        for d in [d for d in self.slots if d < keep_from]:
            del self.slots[d]
        for d in [d for d in self.samples if d < keep_from]:
            del self.samples[d]
        for d in [d for d in self.unscored if d < keep_from]:
            del self.unscored[d]

    def compare(self, b: int, span: int, value: Rescorer | None, cache: RiskScored) -> Comparison:
        """The window of ``span`` slots ending at boundary ``b`` and its reference, as scored
        when one value-parameter version scored both; else both re-scored with ``value``'s
        parameters ("rescored"), or, without them, as scored and "held" (no value alert).
        Also "held" while the value model's first fit falls within the two windows: their
        slots before the first scored one hold updates without a churn risk."""
        cur = window(s for d, s in self.slots.items() if b - span <= d < b)
        ref = window(s for d, s in self.slots.items() if b - 2 * span <= d < b - span)
        first = self.first_scored
        before_fit = 0 if first is None or first >= b else sum(
            n for d, n in self.unscored.items() if b - 2 * span <= d < first)
        if before_fit:
            return Comparison(cur, ref, "held", f"the value model was first fitted within these "
                              f"windows: {before_fit:,} of their customer updates came before it "
                              f"and have no churn risk, so the value figures compare a partial "
                              f"window and raise no alert")
        versions: Counter[int] = Counter()
        for d, s in self.samples.items():
            if b - 2 * span <= d < b:
                versions.update(s.versions)
        if len(versions) < 2:
            return Comparison(cur, ref)
        listed = ", ".join(f"v{v}" for v in sorted(versions))
        c, r = total(cur), total(ref)
        as_scored = (f"as scored, the high-risk share went {r.high_share:.1%} -> "
                     f"{c.high_share:.1%}")
        version = value.version if value is not None else None
        if value is None or version is None:
            return Comparison(cur, ref, "held", f"the windows' churn risks were scored with value "
                              f"parameters {listed} and could not be re-scored: the value figures "
                              f"are as scored ({as_scored}) and raise no alert")
        return Comparison(self._rescored(b - span, b, value, version, cache, cur),
                          self._rescored(b - 2 * span, b - span, value, version, cache, ref),
                          "rescored", f"the windows' churn risks were scored with value "
                          f"parameters {listed} (a re-fit moves every customer's risk at once): "
                          f"both windows re-scored with v{version}; {as_scored}")

    def _rescored(self, start: int, end: int, value: Rescorer, version: int, cache: RiskScored,
                  as_scored: RiskSlot) -> RiskSlot:
        """Slots [start, end)'s samples re-scored with ``value``, as sums per segment (each
        sampled row weighs the slot's updates / rows sampled); the moves into and out of the
        highest band stay those published (``as_scored``'s)."""
        out: RiskSlot = {}
        for d in sorted(d for d in self.samples if start <= d < end):
            s = self.samples[d]
            if s.rows is None or not len(s.rows):
                continue
            if (version, d) not in cache:
                cache[version, d] = value.risk_rows(s.rows[:, [1, 2, 3, 5, 6, 7]])
            risks, high = cache[version, d]
            _add_rows(out, s.rows[:, 0].astype(np.int64), risks, high, s.rows[:, 4],
                      s.seen / len(s.rows))
        for sid, sums in out.items():
            made = as_scored.get(sid, RiskSums())
            sums.entered, sums.left = made.entered, made.left
        return out


def _add_rows(out: RiskSlot, segments: np.ndarray, risks: np.ndarray, high: np.ndarray,
              spend: np.ndarray, weight: float) -> None:
    """Add re-scored sample rows, each weighing ``weight`` updates, to ``out`` per segment."""
    at_risk = np.where(high, spend, 0.0)
    for sid in np.unique(segments).tolist():
        m = segments == sid
        s = out.setdefault(int(sid), RiskSums())
        s.scored += weight * int(m.sum())
        s.sampled += int(m.sum())
        s.risk += weight * float(risks[m].sum())
        s.risk_sq += weight * float((risks[m] ** 2).sum())
        s.high += weight * int(high[m].sum())
        s.at_risk_spend += weight * float(at_risk[m].sum())
        s.at_risk_spend_sq += weight * float((at_risk[m] ** 2).sum())
        s.spend += weight * float(spend[m].sum())
        s.spend_sq += weight * float((spend[m] ** 2).sum())
