"""The leader renames a segment "At-risk high-value" from its measured customer value: a new
model version with the same centres, only when a name changes, and the catalog says why."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from streamseg.drift import DriftConfig, DriftMonitor
from streamseg.features.registry import MODEL_FEATURES
from streamseg.leader.leader import Leader
from streamseg.metrics import Metrics
from streamseg.publish.records import SegmentProfile, SegmentValue
from streamseg.segmenting.assign import Assigner
from streamseg.segmenting.model import SegmentModel
from streamseg.segmenting.naming import AT_RISK_HIGH_VALUE, name_segments
from streamseg.settings import Settings


def leader_with_model() -> Leader:
    cfg = Settings(reporting_currency="EUR")
    drift = DriftMonitor(DriftConfig.from_settings(cfg), MODEL_FEATURES)
    assigner = Assigner(cfg.segment_margin, Metrics(CollectorRegistry()), drift, lambda m: None)
    n = len(MODEL_FEATURES)
    centers = np.zeros((3, n))
    centers[0, MODEL_FEATURES.index("monetary_30d")] = 2.0  # a loyalist-like centre
    centers[1, MODEL_FEATURES.index("discount_share")] = 2.0
    model = SegmentModel.first(MODEL_FEATURES, np.zeros(n), np.ones(n), centers, np.ones(3))
    model.names = name_segments(model.centers_by_id())
    assigner.adopt(model)
    return Leader(cfg, None, None, None, assigner, None)  # type: ignore[arg-type]


def measured(leader: Leader, risks: dict[int, float], spends: dict[int, float]) -> None:
    """As a catalog refresh leaves it: each segment's value and profile (100 members each)."""
    leader.values.by_segment = {sid: SegmentValue(
        customers=100, sampled=100, mean_churn_risk=r, high_risk_share=0.0,
        mean_expected_purchases=1.0, mean_lifetime_value=50.0, total_lifetime_value=5000.0,
        value_at_risk=0.0, net_inflow=None, window_s=None, horizon_days=90.0, currency="EUR",
        params_version=1) for sid, r in risks.items()}
    leader.assigner.set_profiles({sid: SegmentProfile(
        segment_id=sid, name="", size=100, share=1 / 3, means={"monetary_total": s}, zscores={},
        top_features=[], monetary_mean=0.0, model_version=1) for sid, s in spends.items()})


def renamed(leader: Leader) -> SegmentModel | None:
    """What the leader publishes after a catalog refresh (None: no name moved)."""
    return leader.values.renamed(leader.assigner.model, leader.assigner.profiles)


def test_loyalists_turning_at_risk__get_a_new_version_named_at_risk_high_value() -> None:
    leader = leader_with_model()
    model = leader.assigner.model
    assert model is not None and model.names[0] == "High-value loyalists"
    assert renamed(leader) is None  # nothing measured yet: no name moves
    measured(leader, {0: 0.4, 1: 0.4, 2: 0.4}, {0: 600.0, 1: 100.0, 2: 100.0})
    assert renamed(leader) is None  # high-value but not at risk
    measured(leader, {0: 0.7, 1: 0.3, 2: 0.3}, {0: 600.0, 1: 100.0, 2: 100.0})
    nxt = renamed(leader)
    assert nxt is not None and nxt.version == model.version + 1
    assert nxt.names[0] == AT_RISK_HIGH_VALUE and nxt.names[1] == model.names[1]
    np.testing.assert_array_equal(nxt.centers, model.centers)
    leader.assigner.adopt(nxt)
    assert renamed(leader) is None  # named: nothing more to say at the next refresh
    (entry, *_) = leader.catalog(nxt, [])
    assert entry.name == AT_RISK_HIGH_VALUE
    assert entry.name_reason.startswith("mean churn risk 0.70 against 0.43 for all customers; "
                                        "spent 600.00 EUR each to date")
