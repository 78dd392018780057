"""The drift monitor: cheap per-batch aggregation, statistics when a window closes.

The engine calls :meth:`DriftMonitor.observe` once per batch with each
customer's event time, model inputs, assigned segment id and distance, and
previous segment, and the model version that assigned them; that adds
counts and histograms to the *slot* (as long as the shortest window) holding the
customer's event time, plus a bounded uniform sample of the model inputs, and
nothing more. A slot is closed once the engine's
clock is one slot past its end (updates for closed slots are dropped as late). :meth:`DriftMonitor.close`, called from a timer, closes every slot
boundary the clock has passed and, for each configured window length L, compares
the L before the boundary with the L before that (the reference): segment-share
PSI, Jensen-Shannon distance and composition shift, the migration matrix,
centroid movement, the share of customers far from every centre, and per-input
PSI. Windows are sliding: every window length reports at every slot boundary.

A model change (the leader's merge or re-fit) moves customers between segments
although the customers did not change: when the two windows compared hold
assignments by more than one model version, the assignments as made are not
comparable, so both windows' samples are re-scored with the current model (the
``rescore`` callable given to :meth:`~DriftMonitor.close`) and the segment-level
figures compare those (``segment_basis="rescored"``). Without ``rescore`` they
are not evaluated (``"held"``: no segment-level alert). Feature PSI does not
depend on the model and is always evaluated. A re-fit of the value model's
parameters likewise moves every customer's churn risk at once: the value
figures then compare both windows re-scored with the parameters in hand (the
``value`` given to :meth:`~DriftMonitor.close`; ``value_basis="rescored"``, see
:mod:`.risk`), or hold the value alerts back without them.

Time is the engine's clock: the event-time watermark with ``clock="event"`` (so
replays and tests run windows at the speed of the data), else the wall clock.

>>> cfg = DriftConfig(windows=(60,), clock="event", min_customers=10, worker="doc")
>>> mon = DriftMonitor(cfg, ["discount_share"])
>>> xs = [{"discount_share": 0.1}] * 50
>>> mon.observe([30_000] * 50, xs, [0] * 50, [1.0] * 50, [0] * 50)   # minute 0
>>> mon.observe([90_000] * 50, xs, [1] * 50, [1.0] * 50, [0] * 50)   # minute 1: all moved
>>> mon.close(150_000, {0: {"discount_share": 0.0}}, 1, {})  # minute 2 not a slot past yet
[]
>>> [r.window for r in mon.close(180_000, {0: {"discount_share": 0.0}}, 1, {})]
['1m']
>>> rep = mon.close(180_000, {}, 1, {})  # nothing new to close
>>> rep
[]

Two model versions in the compared windows: the segment mix is read with one model.

>>> mon = DriftMonitor(cfg, ["discount_share"])
>>> mon.observe([30_000] * 50, xs, [0] * 50, [1.0] * 50, [0] * 50, model_version=1)
>>> mon.observe([90_000] * 50, xs, [1] * 50, [1.0] * 50, [0] * 50, model_version=2)
>>> same = lambda rows, names: (np.zeros(len(rows), dtype=np.int64), np.ones(len(rows)))
>>> (r,) = mon.close(180_000, {}, 2, {}, rescore=same)
>>> r.segment_basis, r.model_versions, r.reference_model_versions, r.composition_shift, r.alerts
('rescored', [2], [1], 0.0, [])
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from streamseg.drift import population, risk
from streamseg.drift.alerts import Thresholds, evaluate, value_alerts
from streamseg.drift.forecast import Flows, Persistence, Window
from streamseg.drift.report import DriftReport, Migration, SegmentShare, ShareForecast
from streamseg.drift.stats import (
    composition_shift,
    js_distance,
    psi,
    psi_on_reference_quantiles,
    quantile_from_histogram,
    share_above,
)
from streamseg.drift.windows import (
    DIST_EDGES,
    DIST_MAX,
    Slot,
    bin_codes,
    count_codes,
    feature_edges,
    sum_slots,
    window_name,
)
from streamseg.events.models import iso
from streamseg.features.registry import feature
from streamseg.publish.records import now_iso
from streamseg.segmenting.base import Vector

if TYPE_CHECKING:
    from streamseg.settings import Settings

Centres = Mapping[int, Mapping[str, float]]
#: (raw model-input rows, their column names) -> (segment id, distance) per row, with one model
Rescore = Callable[[np.ndarray, Sequence[str]], tuple[np.ndarray, np.ndarray]]
Scored = dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """What the monitor needs from :class:`~streamseg.settings.Settings`."""

    windows: tuple[int, ...]  # seconds, ascending, multiples of the first
    clock: str
    min_customers: int = 100
    emerging_quantile: float = 0.95
    emerging_distance: float = 0.0  # 0: the reference window's emerging_quantile distance
    sample_per_slot: int = 1000  # model-input rows kept per slot to re-score after a model change
    thresholds: Thresholds = field(default_factory=Thresholds)
    high_band: str = "high"  # the value model's highest risk band (what the risk alerts watch)
    currency: str = ""  # the reporting currency (alert texts)
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @classmethod
    def from_settings(cls, s: Settings) -> DriftConfig:
        return cls(
            windows=tuple(s.drift_window_seconds), clock=s.clock,
            min_customers=s.drift_min_customers, emerging_quantile=s.drift_emerging_quantile,
            emerging_distance=s.drift_emerging_distance,
            thresholds=Thresholds(
                composition_shift=s.drift_composition_alert, segment_psi=s.drift_psi_alert,
                feature_psi=s.drift_feature_psi_alert, emerging_share=s.drift_emerging_alert,
                population_shrink=s.drift_shrink_alert, high_risk_share=s.drift_high_risk_alert,
                segment_churn_risk=s.drift_churn_risk_alert,
                value_at_risk=s.drift_value_at_risk_alert),
            high_band=s.value_bands[-1][0], currency=s.reporting_currency,
        )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    centres: dict[int, np.ndarray]
    rescore: Rescore | None = None  # assigns rows with this version's model


class DriftMonitor:
    def __init__(self, config: DriftConfig, feature_names: Sequence[str]) -> None:
        self.config = config
        self.feature_names = list(feature_names)
        self.edges = [feature_edges(f) for f in self.feature_names]
        #: inputs that grow with the clock (tenure, recency): their PSI is reported but
        #: never alerts, as their shift is the calendar's, not drift
        self.time_driven = [f for f in self.feature_names if feature(f).unit == "days"]
        self.slot_ms = config.windows[0] * 1000
        self.spans = [w // config.windows[0] for w in config.windows]  # window length in slots
        self.slots: dict[int, Slot] = {}
        #: slot -> churn risk per segment (.risk), and samples to re-score them after a re-fit
        self.risk = risk.RiskLedger(config.high_band, config.sample_per_slot,
                                    np.random.default_rng(1))
        self.next_boundary: int | None = None
        self.snapshots: dict[int, _Snapshot] = {}  # boundary -> centres when it closed
        self.persistence = {span: Persistence(span) for span in self.spans}  # of each window's forecasts
        self.late_slots = 1
        self.rng = np.random.default_rng(0)  # the slots' samples
        self.observed = 0  # batches observed so far (see :meth:`closing`)
        self.touched: dict[int, int] = {}  # slot -> ``observed`` when rows last came into it

    # -- per batch --------------------------------------------------------------
    def observe(self, times_ms: Sequence[float], vectors: Sequence[Vector],
                segment_ids: Sequence[int], distances: Sequence[float] | np.ndarray,
                previous: Sequence[int | None], *, model_version: int | None = None,
                customers: Sequence[str] | None = None) -> None:
        """Add one batch to the slots holding each customer's event time (counts and
        histograms, and the model inputs into each slot's bounded sample).
        ``model_version``: the version that assigned ``segment_ids`` (None: unknown,
        no model change is ever seen). ``customers``: the rows' customer ids, so each
        slot counts the customers active in it once (see :func:`.population.shrink`).
        Updates for slots already closed are too late and dropped."""
        if not len(segment_ids):
            return
        self.observed += 1
        n = len(segment_ids)
        slot_of = np.fromiter((int(t // self.slot_ms) for t in times_ms), dtype=np.int64, count=n)
        seg = np.asarray(segment_ids, dtype=np.int64)
        dist = np.asarray(distances, dtype=float)
        prev = np.fromiter((-1 if p is None else p for p in previous), dtype=np.int64, count=n)
        matrix = np.array([[x[f] for f in self.feature_names] for x in vectors], dtype=float)
        codes, starts = bin_codes(matrix, self.edges)  # binned once, counted per slot
        for index in np.unique(slot_of).tolist():
            if self.next_boundary is not None and index < self.next_boundary - 1:
                continue
            rows = slot_of == index
            self.touched[index] = self.observed
            slot = self.slots.setdefault(index, Slot())
            slot.keep(matrix[rows], slot.n, self.config.sample_per_slot, self.rng)
            if model_version is not None:
                slot.versions[model_version] += int(rows.sum())
            if customers is not None:
                ids = [customers[i] for i in np.flatnonzero(rows).tolist()]
                slot.active.update(zip(ids, seg[rows].tolist(), strict=True))
                # a row each (not a view that would hold the whole batch's matrix alive)
                slot.inputs.update(zip(ids, ((model_version, x.copy()) for x in matrix[rows]),
                                       strict=True))
            self._add(slot, seg[rows], dist[rows], prev[rows], count_codes(codes[rows], starts))

    def observe_risk(self, scored_ms: float, segment_ids: Sequence[int],
                     risks: Sequence[risk.Observation | None],
                     inputs: Sequence[risk.Inputs | None] | None = None) -> None:
        """Add a batch's churn risks (None: not scored) to the slot holding ``scored_ms``, the
        clock they were scored at: a silent customer's risk rises at the re-scoring sweep,
        long after its last event (see :mod:`.risk`). ``inputs``: what each risk was computed
        from, so a window spanning a value re-fit can be re-scored. Too late for a closed
        slot: dropped."""
        index = int(scored_ms // self.slot_ms)
        if self.next_boundary is not None and index < self.next_boundary - 1:
            return
        self.observed += 1
        self.touched[index] = self.observed
        self.risk.observe(index, segment_ids, risks, inputs)

    def _add(self, slot: Slot, seg: np.ndarray, dist: np.ndarray, prev: np.ndarray,
             hists: list[np.ndarray]) -> None:
        ids, counts = np.unique(seg, return_counts=True)
        slot.segments.update(dict(zip(ids.tolist(), counts.tolist(), strict=True)))
        moved = (prev >= 0) & (prev != seg)
        if moved.any():
            slot.migrations.update(Counter(zip(prev[moved].tolist(), seg[moved].tolist(),
                                               strict=True)))
        first = prev < 0
        slot.first_assignments += int(first.sum())
        if first.any():
            slot.entries.update(Counter(seg[first].tolist()))
        slot.distances += np.histogram(np.minimum(dist, DIST_MAX - 1e-9), DIST_EDGES)[0]
        if slot.features:
            for mine, h in zip(slot.features, hists, strict=True):
                mine += h
        else:
            slot.features = hists

    # -- per timer tick -----------------------------------------------------------
    def close(self, now_ms: float, centres: Centres, model_version: int,
              names: Mapping[int, str], *, rescore: Rescore | None = None,
              value: risk.Rescorer | None = None) -> list[DriftReport]:
        """Reports for every slot boundary up to ``now_ms`` not closed yet.

        ``rescore`` assigns raw model-input rows with the current model (``model_version``):
        used when the windows compared span a model change; ``value`` scores churn risk
        with the value parameters in hand: used when they span a value re-fit."""
        return [r for step in self.closing(now_ms, centres, model_version, names, rescore=rescore,
                                           value=value) for r in step]

    def closing(self, now_ms: float, centres: Centres, model_version: int,
                names: Mapping[int, str], *, rescore: Rescore | None = None,
                value: risk.Rescorer | None = None) -> Iterator[list[DriftReport]]:
        """:meth:`close` one window's report at a time (``[]``: too few customers to report).

        The caller may let batches run between two steps: a clock that passes many
        boundaries at once (a replay, or the bench's simulated days) made one close hold
        the event loop for hundreds of milliseconds. A step's batch may add rows to open
        slots and late rows to the last closed one, as if the timer had fired a moment
        later; the samples of the slots it touched are then re-scored again."""
        if not self.slots:
            return
        # boundaries b with (b + late_slots) * slot_ms <= now_ms: a slot is reported once the
        # clock is a slot past its end, so partitions consumed a little behind still land
        last = int(now_ms // self.slot_ms) - self.late_slots
        first = self.next_boundary if self.next_boundary is not None else min(self.slots) + 1
        snapshot = _Snapshot(model_version, {sid: np.array([c.get(f, 0.0) for f in self.feature_names])
                                             for sid, c in centres.items()}, rescore)
        scored: Scored = {}  # (model version, slot) -> the slot's sample re-scored
        risks: risk.RiskScored = {}  # (value-parameters version, slot) -> its risks re-scored
        seen = self.observed
        for b in self._boundaries(first, last):
            self.snapshots[b] = snapshot
            for seconds, span in zip(self.config.windows, self.spans, strict=True):
                if self.observed != seen:  # rows came in: samples of their slots are re-scored again
                    stale = {d for d, at in self.touched.items() if at > seen}
                    for key in [k for k in scored if k[1] in stale]:
                        del scored[key]
                    for key in [k for k in risks if k[1] in stale]:
                        del risks[key]
                    seen = self.observed
                rep = self._report(b, seconds, span, snapshot, names, scored,
                                   self.risk.compare(b, span, value, risks))
                yield [] if rep is None else [rep]
            self.next_boundary = max(first, b + 1)  # a batch between steps sees it closed
        self.next_boundary = max(first, last + 1)
        self._prune(last)

    def _boundaries(self, first: int, last: int) -> list[int]:
        """Boundaries in [first, last] whose windows hold data (skips idle stretches)."""
        longest = max(self.spans)
        found = {b for d in self.slots for b in range(max(first, d + 1), min(last, d + longest) + 1)}
        return sorted(found)

    def _prune(self, last: int) -> None:
        keep_from = last + 1 - 2 * max(self.spans)
        for d in [d for d in self.slots if d < keep_from]:
            del self.slots[d]
        for d in [d for d in self.touched if d < keep_from]:
            del self.touched[d]
        self.risk.prune(keep_from)
        old = sorted(b for b in self.snapshots if b < keep_from)
        for b in old[:-1]:  # the newest old one may still be a reference
            del self.snapshots[b]

    # -- one window ---------------------------------------------------------------
    def _window(self, start: int, end: int) -> Slot:
        return sum_slots([s for d, s in self.slots.items() if start <= d < end])

    def _customers(self, start: int, end: int) -> Window:
        """The customers active in slots [start, end): customer -> (segment last assigned,
        slots from its last activity to the window's end)."""
        out: dict[str, tuple[int, int]] = {}
        for d in sorted(d for d in self.slots if start <= d < end):
            out.update((cid, (seg, end - 1 - d)) for cid, seg in self.slots[d].active.items())
        return out

    def _assignments(self, start: int, end: int) -> dict[str, tuple[int | None, np.ndarray]]:
        """The customers active in slots [start, end): customer -> (model version, model
        inputs) of its last assignment there."""
        out: dict[str, tuple[int | None, np.ndarray]] = {}
        for d in sorted(d for d in self.slots if start <= d < end):
            out.update(self.slots[d].inputs)
        return out

    def _reread(self, start: int, end: int, now: _Snapshot) -> dict[str, int]:
        """The customers of slots [start, end) last assigned by another model version than
        ``now`` -> the segment ``now`` assigns their inputs then to: where they go at their
        next event (see :attr:`.Flows.start`). Empty without ``now.rescore``."""
        inputs = self._assignments(start, end)
        older = [c for c, (v, _) in inputs.items() if v is not None and v != now.version]
        if not older or now.rescore is None:
            return {}
        ids, _ = now.rescore(np.stack([inputs[c][1] for c in older]), self.feature_names)
        return dict(zip(older, ids.tolist(), strict=True))

    def _reference_snapshot(self, boundary: int) -> _Snapshot | None:
        older = sorted(b for b in self.snapshots if b <= boundary)
        return self.snapshots[older[-1]] if older else None

    def _reading_model(self, b: int, span: int, now: _Snapshot, then: _Snapshot | None,
                       scored: Scored) -> tuple[_Snapshot, str]:
        """The model both windows are re-scored with when they span a model change.

        The current model, or the reference window's if the mix moved more on its
        segments: a re-fit during a change follows the customers (a shrinking
        segment's centre moves into its neighbours' ground), so read with the new
        model alone the shrink fades from view; read with the segments the
        reference window had, it shows. Either reading compares both windows with
        one model, so a stationary mix shows no shift on either. Returns the model
        and a note on the other reading.
        """
        if then is None or then.rescore is None or then.version == now.version:
            return now, ""
        shifts = {}
        for model in (now, then):
            cur, _ = self._rescored(b - span, b, model, scored)
            ref, _ = self._rescored(b - 2 * span, b - span, model, scored)
            shifts[model.version] = _shift(ref, cur)
        if shifts[then.version] > shifts[now.version]:
            return then, (f" (the reference window's model; with the current v{now.version} "
                          f"the shift is {shifts[now.version]:.3f})")
        return now, (f" (with the reference window's v{then.version} the shift is "
                     f"{shifts[then.version]:.3f})")

    def _rescored(self, start: int, end: int, model: _Snapshot,
                  scored: Scored) -> tuple[Counter[int], np.ndarray]:
        """A window's segment counts and distance histogram with its slots' samples
        re-scored by one model; each sampled row weighs (slot's rows / rows sampled)."""
        counts: Counter[int] = Counter()
        dists = np.zeros(len(DIST_EDGES) - 1)
        for d in sorted(d for d in self.slots if start <= d < end):
            slot = self.slots[d]
            if slot.sample is None or not len(slot.sample):
                continue
            if (model.version, d) not in scored:
                assert model.rescore is not None
                scored[model.version, d] = model.rescore(slot.sample, self.feature_names)
            ids, dist = scored[model.version, d]
            weight = slot.n / len(slot.sample)
            u, k = np.unique(ids, return_counts=True)
            counts.update(dict(zip(u.tolist(), (k * weight).tolist(), strict=True)))
            dists += np.histogram(np.minimum(dist, DIST_MAX - 1e-9), DIST_EDGES)[0] * weight
        return counts, dists

    def _segment_basis(self, b: int, span: int, cur: Slot, ref: Slot, now: _Snapshot,
                       then: _Snapshot | None, scored: Scored) -> tuple[
                           Counter[int], Counter[int], np.ndarray, np.ndarray, str, str]:
        """Both windows' segment counts and distance histograms on one footing: as
        assigned, re-scored with one model (they span a model change), or held."""
        cur_seg, ref_seg, cur_dist, ref_dist = cur.segments, ref.segments, cur.distances, ref.distances
        basis, note = "assigned", ""
        spanned = sorted(set(cur.versions) | set(ref.versions))
        if len(spanned) > 1:
            as_made = _shift(ref.segments, cur.segments)
            versions = ", ".join(f"v{v}" for v in spanned)
            if now.rescore is not None:
                basis = "rescored"
                model, other = self._reading_model(b, span, now, then, scored)
                cur_seg, cur_dist = self._rescored(b - span, b, model, scored)
                ref_seg, ref_dist = self._rescored(b - 2 * span, b - span, model, scored)
                note = (f"the windows span model versions {versions}: both re-scored with "
                        f"v{model.version}{other}; the assignments as made show composition "
                        f"shift {as_made:.3f}")
            else:
                basis = "held"
                note = (f"the windows span model versions {versions} and could not be re-scored: "
                        f"segment-level figures are the assignments as made (composition shift "
                        f"{as_made:.3f}) and raise no alert")
        return cur_seg, ref_seg, cur_dist, ref_dist, basis, note

    def _report(self, b: int, seconds: int, span: int, now: _Snapshot, names: Mapping[int, str],
                scored: Scored, value: risk.Comparison) -> DriftReport | None:
        cur, ref = self._window(b - span, b), self._window(b - 2 * span, b - span)
        if cur.n < self.config.min_customers or ref.n < self.config.min_customers:
            return None
        then = self._reference_snapshot(b - span)
        cur_seg, ref_seg, cur_dist, ref_dist, basis, note = self._segment_basis(
            b, span, cur, ref, now, then, scored)
        # every segment a customer was assigned (the flows) and the segment basis counted
        sids = sorted(set(cur_seg) | set(ref_seg) | set(cur.segments) | set(ref.segments))
        c = np.array([cur_seg[s] for s in sids], dtype=float)
        r = np.array([ref_seg[s] for s in sids], dtype=float)
        shift, seg_psi = composition_shift(r, c), psi(r, c)
        threshold = self.config.emerging_distance or quantile_from_histogram(
            ref_dist, DIST_EDGES, self.config.emerging_quantile)
        emerging = share_above(cur_dist, DIST_EDGES, threshold)
        feat_psi = {f: psi_on_reference_quantiles(rh, ch) for f, rh, ch in
                    zip(self.feature_names, ref.features, cur.features, strict=True)}
        flows = Flows.build(self._customers(b - 2 * span, b - span), self._customers(b - span, b),
                            sids, span, reread=self._reread(b - span, b, now))
        active, ref_active = cur.active_counts(), ref.active_counts()
        gone = population.shrink(ref_active, active)
        moved = sum(cur.migrations.values())
        ms = self.slot_ms
        return DriftReport(
            worker=self.config.worker, window=window_name(seconds), window_seconds=seconds,
            clock=self.config.clock, window_start=iso((b - span) * ms), window_end=iso(b * ms),
            reference_start=iso((b - 2 * span) * ms), reference_end=iso((b - span) * ms),
            customers=cur.n, reference_customers=ref.n,
            segments=_segments(sids, c, r, flows, cur, names),
            **_forecast(flows, self.persistence[span], b),
            model_versions=sorted(cur.versions), reference_model_versions=sorted(ref.versions),
            segment_basis=basis, segment_note=note,
            composition_shift=shift, psi=seg_psi, js_distance=js_distance(r, c),
            model_version=now.version,
            reference_model_version=then.version if then else None,
            centroid_shift=_centroid_shift(then, now),
            migrations=[Migration(from_segment=a, to_segment=z, customers=n)
                        for (a, z), n in cur.migrations.most_common()],
            first_assignments=cur.first_assignments, migration_rate=moved / cur.n,
            emerging_distance=threshold, emerging_share=emerging,
            reference_emerging_share=share_above(ref_dist, DIST_EDGES, threshold),
            feature_psi=feat_psi, time_driven_features=self.time_driven,
            active_customers=sum(active.values()),
            reference_active_customers=sum(ref_active.values()), population_shrink=gone,
            alerts=evaluate(self.config.thresholds, composition_shift=shift, psi=seg_psi,
                            feature_psi={f: v for f, v in feat_psi.items()
                                         if f not in self.time_driven},
                            emerging_share=emerging, segments=basis != "held", shrink=gone,
                            touched=population.moves(sids, r / r.sum(), c / c.sum(), names),
                            lapsed=population.losses(ref_active, active, names))
            + (value_alerts(self.config.thresholds, value.cur, value.ref, names,
                            self.config.currency) if value.basis != "held" else []),
            value_basis=value.basis, value_note=value.note,
            **risk.report_fields(value.cur, value.ref, names),
            generated_at=now_iso(),
        )


def _segments(sids: list[int], c: np.ndarray, r: np.ndarray, flows: Flows, cur: Slot,
              names: Mapping[int, str]) -> list[SegmentShare]:
    size = flows.size
    total = size.sum() or 1.0
    return [SegmentShare(segment_id=s, name=names.get(s, f"Segment {s}"), customers=round(n),
                         share=n / c.sum(), reference_share=rn / r.sum(),
                         first_assignments=cur.entries.get(s, 0), active_customers=int(a),
                         active_share=a / total, arrivals=int(arr), exits=int(ex))
            for s, n, rn, a, arr, ex in zip(sids, c, r, size, flows.arrivals, flows.exits,
                                            strict=True)]


def _forecast(flows: Flows, past: Persistence, boundary: int) -> dict[str, Any]:
    """The report's forecast fields: the segments' shares of the active customers one and
    two windows ahead (Markov, the second damped by the persistence ``past`` reports
    showed) and that persistence with the pairs it rests on; none when the customers were
    not given to :meth:`DriftMonitor.observe`."""
    if not flows.now.sum():
        return {}
    phi = past.observe(boundary, dict(zip(flows.sids, (flows.size / flows.size.sum()).tolist(), strict=True)))
    one, two = flows.forecast(persistence=phi)
    past.forecast_made(boundary, dict(zip(flows.sids, one.tolist(), strict=True)))
    return {"forecast": [ShareForecast(segment_id=s, one_window_ahead=float(a), two_windows_ahead=float(b))
                         for s, a, b in zip(flows.sids, one, two, strict=True)],
            "forecast_persistence": phi, "forecast_persistence_pairs": past.pairs}


def _shift(reference: Counter[int], current: Counter[int]) -> float:
    sids = sorted(set(reference) | set(current))
    return composition_shift([reference[s] for s in sids], [current[s] for s in sids])


def _centroid_shift(then: _Snapshot | None, now: _Snapshot) -> dict[str, float]:
    """Distance each segment's centre moved (same id in both snapshots)."""
    if then is None:
        return {}
    return {str(sid): float(np.linalg.norm(now.centres[sid] - then.centres[sid]))
            for sid in sorted(set(now.centres) & set(then.centres))}

