"""The ``streamseg.drift.v1`` record: one report per window length per slot boundary.

The JSON Schema is generated from these models (``DriftReport.model_json_schema()``)
and kept in ``docs/drift.v1.schema.json`` (a test keeps the two equal).
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "streamseg.drift.v1"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmentShare(_Record):
    """One segment's weight in the current and the reference window."""

    segment_id: int
    name: str
    customers: int = Field(description="customer updates assigned to the segment in the window "
                           "(segment_basis 'rescored': estimated from the window's re-scored sample)")
    share: float = Field(description="customers / all customer updates in the window")
    reference_share: float
    first_assignments: int = Field(0, description="customers assigned for the first time in the "
                                   "window who went to this segment (as assigned)")
    active_customers: int = Field(0, description="customers active in the window whose last "
                                  "assignment in it was this segment, each counted once (as "
                                  "assigned): the segment's size the forecast is about")
    active_share: float = Field(0.0, description="active_customers / all customers active in the "
                                "window")
    arrivals: int = Field(0, description="of active_customers, those not active in the reference "
                          "window (new, or back after a silence)")
    exits: int = Field(0, description="customers active in the reference window whose last "
                       "assignment there was this segment and who are not active in the window")


class ShareForecast(_Record):
    """A segment's forecast active_share from how customers went from the reference window
    to this one (Markov, see streamseg.drift.forecast): kept, moved, gone (by segment and
    recency) and arrived."""

    segment_id: int
    one_window_ahead: float = Field(description="forecast active_share of the next window")
    two_windows_ahead: float = Field(description="forecast active_share of the window after the next")


class Migration(_Record):
    """Customers whose segment changed from ``from_segment`` to ``to_segment`` in the window."""

    from_segment: int
    to_segment: int
    customers: int


class SegmentRisk(_Record):
    """A segment's churn risk in the window and the reference window (once the value model
    is fitted; see docs/value.md): levels per customer update scored."""

    segment_id: int
    name: str
    scored: int = Field(description="customer updates in the window scored with the value model")
    mean_churn_risk: float = Field(description="mean churn risk of those updates")
    high_risk_share: float = Field(description="share of them in the highest risk band")
    value_at_risk_per_customer: float = Field(
        description="net spend to date of the updates in the highest band, per update scored")
    value_at_risk_share: float = Field(
        description="the highest band's share of the net spend to date of the updates scored")
    reference_scored: int
    reference_mean_churn_risk: float | None = Field(description="None: none scored there")
    reference_high_risk_share: float | None
    entered_high_risk: int = Field(description="customers whose published risk band moved "
                                   "into the highest band in the window (a first band is no move)")
    left_high_risk: int = Field(description="customers whose published band left the highest band")


class Alert(_Record):
    """A documented threshold the window crossed."""

    alert: str = Field(description="composition_shift | segment_psi | feature_psi | "
                       "emerging_segment | population_shrink | high_risk_share | "
                       "segment_churn_risk | value_at_risk")
    value: float
    threshold: float
    detail: str


class DriftReport(_Record):
    """How the segment mix and the model inputs moved in one window against the one before it."""

    schema_: str = Field(SCHEMA, alias="schema", description="always 'streamseg.drift.v1'")
    worker: str = Field(description="host:pid of the worker; each worker reports on its partitions")
    window: str = Field(description="window length label, e.g. '1m', '15m', '1d'")
    window_seconds: int
    clock: str = Field(description="'event': windows follow the event-time watermark; 'wall': wall clock")
    window_start: str
    window_end: str
    reference_start: str = Field(description="the reference is the equally long window just before")
    reference_end: str
    customers: int = Field(description="customer updates assigned in the window (a customer counts "
                           "once per batch it appears in)")
    reference_customers: int
    segments: list[SegmentShare]
    model_versions: list[int] = Field(
        default_factory=list, description="model versions that assigned the window's customers")
    reference_model_versions: list[int] = Field(
        default_factory=list, description="model versions that assigned the reference's customers")
    segment_basis: Literal["assigned", "rescored", "held"] = Field(
        "assigned", description="what the segment-level figures (segments, composition_shift, psi, "
        "js_distance, emerging_*) compare. 'assigned': the assignments as made, one model version "
        "made them all; 'rescored': the two windows span a model change (a re-fit moves customers "
        "between segments although they did not change), so a sample of each window's model "
        "inputs was re-scored with the current model version and those are compared; 'held': "
        "they span a model change and could not be re-scored, so the figures are the assignments "
        "as made and raise no alert. feature_psi is model-independent and always evaluated")
    segment_note: str = Field("", description="why the segment basis is not 'assigned', and the "
                              "composition shift the assignments as made would have shown")
    composition_shift: float = Field(description="total variation distance between the segment "
                                     "shares: the share of customers that would have to move")
    psi: float = Field(description="population stability index of the segment shares")
    js_distance: float = Field(description="Jensen-Shannon distance (base 2) of the segment shares")
    model_version: int
    reference_model_version: int | None = Field(
        description="model version when the reference window closed (None if not seen)")
    centroid_shift: dict[str, float] = Field(
        description="segment id -> distance (standardized units) its centre moved since the "
        "reference window closed")
    migrations: list[Migration]
    forecast: list[ShareForecast] = Field(
        default_factory=list, description="each segment's active_share one and two windows ahead: "
        "the window's customers kept (by segment and recency), moved and gone at the rates seen "
        "from the reference window, plus the window's arrivals")
    forecast_persistence: float | None = Field(
        None, description="how much of a forecast change goes on, as this window length's past "
        "reports showed (0: none came, 1: all of it): the share of the chain's change kept two "
        "windows ahead (docs/model.md: migration forecast); None: no forecast")
    forecast_persistence_pairs: int = Field(
        0, description="past reports whose one-window forecast's outcome forecast_persistence "
        "rests on (0: the prior, 0.5, alone)")
    first_assignments: int = Field(description="customers assigned for the first time in the window")
    migration_rate: float = Field(description="moved customers / customer updates in the window")
    emerging_distance: float = Field(description="distance beyond which a customer counts as far "
                                     "from every centre")
    emerging_share: float = Field(description="share of the window's customers beyond emerging_distance")
    reference_emerging_share: float
    feature_psi: dict[str, float] = Field(description="PSI of each model input's distribution")
    time_driven_features: list[str] = Field(
        default_factory=list, description="model inputs that grow with the clock (tenure_days, "
        "days_since_last_activity): their feature_psi is reported but never alerts, since a "
        "steady population's tenures and recencies move with the calendar, not by drift")
    active_customers: int = Field(0, description="customers active in the window, each counted "
                                  "once per slot (the shortest window) it was active in: "
                                  "independent of how events were batched")
    reference_active_customers: int = 0
    population_shrink: float = Field(0.0, description="share of the reference window's active "
                                     "customers missing from the window (0 if it grew)")
    high_risk_share: float | None = Field(
        None, description="share of the window's scored customer updates in the highest risk "
        "band (None: no value model yet)")
    reference_high_risk_share: float | None = None
    entered_high_risk: int = Field(0, description="customers whose published risk band moved "
                                   "into the highest band in the window")
    left_high_risk: int = Field(0, description="customers whose published band left it")
    value_at_risk_per_customer: float | None = Field(
        None, description="net spend to date of the scored updates in the highest band, per "
        "update scored, in the reporting currency")
    reference_value_at_risk_per_customer: float | None = None
    value_at_risk_share: float | None = Field(
        None, description="the highest band's share of the net spend to date of the window's "
        "scored updates: what the value_at_risk alert compares (spend to date grows with "
        "tenure in and out of the band alike, so an ageing population does not move it)")
    reference_value_at_risk_share: float | None = None
    risk: list[SegmentRisk] = Field(default_factory=list,
                                    description="each segment's churn risk (value model fitted)")
    value_basis: Literal["scored", "rescored", "held"] = Field(
        "scored", description="what the churn-risk figures (high_risk_share, "
        "value_at_risk_per_customer, value_at_risk_share, risk, and their reference_*) compare. 'scored': the risks as "
        "scored, one version of the value parameters scored both windows; 'rescored': the windows "
        "span a re-fit of the value parameters (which moves every customer's risk at once), so a "
        "sample of each window's scored updates was re-scored with the parameters in hand and "
        "those are compared; 'held': they span a re-fit and could not be re-scored, or the "
        "value model's first fit falls within them (part of them has no churn risk), so the "
        "figures are as scored and raise no value alert. entered_high_risk and left_high_risk "
        "are always the bands as published")
    value_note: str = Field("", description="why the value basis is not 'scored': the versions "
                            "and the high-risk shares as scored")
    alerts: list[Alert]
    generated_at: str

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(by_alias=True))


if __name__ == "__main__":  # python -m streamseg.drift.report > docs/drift.v1.schema.json
    import json

    print(json.dumps(DriftReport.model_json_schema(by_alias=True), indent=2))
