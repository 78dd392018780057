"""Assigning customers with the current global model, and saying why they moved.

Every worker assigns with the same versioned
:class:`~streamseg.segmenting.model.SegmentModel` (adopted from the model
topic, or merged in process), so a customer gets the same segment id whichever
worker reads its events. Each first assignment or change comes with reasons:
the features that pulled the customer from its old segment towards the new
one, against the segments' profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import nan

from streamseg.drift import DriftMonitor
from streamseg.drift.risk import Inputs, Observation
from streamseg.events.models import iso
from streamseg.metrics import Metrics
from streamseg.publish.records import CustomerValueRecord, SegmentProfile, SegmentUpdate, now_iso
from streamseg.segmenting import explain
from streamseg.segmenting.model import SegmentModel
from streamseg.value.score import BandedValue


@dataclass(slots=True)
class Row:
    """One customer to (re)assign."""

    cid: str
    x: dict[str, float]  # model input
    feats: dict[str, float]  # every feature, original units
    ts: int  # newest event time, ms
    prev: int | None  # current segment
    #: the batch held a redelivered event: publish the segment even if unchanged
    #: (see Engine._segment)
    again: bool = False
    #: the customer's value now (None: no value model yet), and the risk band last published
    value: BandedValue | None = None
    prev_band: str | None = None

    @property
    def band_changed(self) -> bool:
        """The risk band to publish differs from the one last published."""
        return self.value is not None and self.value.risk_band != self.prev_band

    def risk_seen(self) -> Observation | None:
        """What the drift monitor adds up of the customer's value (see streamseg.drift.risk)."""
        v = self.value
        return None if v is None else (v.churn_risk, v.risk_band, self.prev_band,
                                       self.feats.get("monetary_total", 0.0))

    def risk_inputs(self) -> Inputs | None:
        """What the customer's churn risk was computed from (the drift monitor re-scores
        it after a value re-fit): the parameters' version, the summary and the active days'
        (NaN without them)."""
        v = self.value
        if v is None:
            return None
        a = v.active
        act = (nan, nan, nan) if a is None else (a.frequency, a.recency, a.T)
        return (v.params.version, v.rfm.frequency, v.rfm.recency, v.rfm.T, *act)


class Assigner:
    """The global model this worker assigns with, its segments' names and profiles.

    >>> from prometheus_client import CollectorRegistry
    >>> from streamseg.drift import DriftConfig
    >>> from streamseg.features.registry import MODEL_FEATURES
    >>> from streamseg.settings import Settings
    >>> drift = DriftMonitor(DriftConfig.from_settings(Settings()), MODEL_FEATURES)
    >>> assigner = Assigner(0.1, Metrics(CollectorRegistry()), drift, on_adopt=lambda m: None)
    >>> assigner.model is None, assigner.name_of(3)  # no model yet: customers are held back
    (True, 'Segment 3')
    """

    def __init__(self, margin: float, metrics: Metrics, drift: DriftMonitor,
                 on_adopt: Callable[[SegmentModel], None]) -> None:
        self.margin = margin  # settings.segment_margin: hysteresis against flapping
        self.metrics = metrics
        self.drift = drift
        self.on_adopt = on_adopt  # the local learner continues from the adopted centres
        #: replaced whole when a new version arrives, never mutated (the web thread reads it)
        self.model: SegmentModel | None = None
        self.profiles: Mapping[int, SegmentProfile] = {}

    def adopt(self, model: SegmentModel) -> bool:
        """Assign with ``model`` from now on, unless we already have a newer one."""
        if self.model is not None and model.version <= self.model.version:
            return False
        self.model = model
        self.metrics.model_version.set(model.version)
        self.on_adopt(model)
        return True

    def set_profiles(self, profiles: Mapping[int, SegmentProfile]) -> None:
        """Segment profiles (from the catalog, or computed by the leader) to explain changes with."""
        self.profiles = profiles

    def name_of(self, segment_id: int) -> str:
        return self.model.names.get(segment_id, f"Segment {segment_id}") if self.model else \
            f"Segment {segment_id}"

    def segment_means(self, model: SegmentModel, segment_id: int) -> dict[str, float] | None:
        """A segment's feature means in original units: its profile, else its centre."""
        prof = self.profiles.get(segment_id)
        if prof is not None and prof.means:  # an empty segment has no means yet
            return prof.means
        raw = model.raw_center(segment_id)
        return None if raw is None else explain.original_units(model.features, raw)

    def assign(self, rows: list[Row], scored_ms: float | None = None) -> list[SegmentUpdate]:
        """Assign ``rows`` with the current model (drift windows see every one, their churn
        risk at ``scored_ms``, the clock it was scored at; None: the newest event's); return
        first assignments and changes. Before the first model there is none: hold customers back."""
        model = self.model
        if model is None:
            raise RuntimeError("no global model yet: hold customers back (see streamseg.held)")
        ids, dists, z = model.assign([r.x for r in rows], [r.prev for r in rows], self.margin)
        self.drift.observe([r.ts for r in rows], [r.x for r in rows], ids, dists,
                           [r.prev for r in rows], model_version=model.version,
                           customers=[r.cid for r in rows])
        self.drift.observe_risk(max(r.ts for r in rows) if scored_ms is None else scored_ms,
                                ids, [r.risk_seen() for r in rows],
                                [r.risk_inputs() for r in rows])
        processed = now_iso()
        out = []
        for n, (r, sid) in enumerate(zip(rows, ids, strict=True)):
            if r.prev == sid and not r.again and not r.band_changed:
                continue
            why = explain.reasons(
                model.features, z[n], r.feats,
                None if r.prev is None else model.center_of(r.prev),
                model.centers[model.ids.index(sid)],
                None if r.prev is None else self.segment_means(model, r.prev),
                self.segment_means(model, sid) or {})
            out.append(SegmentUpdate(
                customer_id=r.cid, segment_id=sid, segment_name=self.name_of(sid),
                previous_segment_id=r.prev, distance=float(dists[n]), model_version=model.version,
                event_ts=iso(r.ts), processed_ts=processed, reasons=why,
                risk_band=r.value.risk_band if r.value else None, previous_risk_band=r.prev_band,
                value=CustomerValueRecord(**r.value.to_dict()) if r.value else None))
        return out
