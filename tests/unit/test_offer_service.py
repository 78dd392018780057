"""The example offer service's decisions (the broker round trip is in tests/integration/test_api.py)."""

from __future__ import annotations

from examples.offer_service.__main__ import OfferService
from examples.offer_service.offers import choose_offer
from streamseg.client import Tombstone
from streamseg.publish.records import CatalogEntry, SegmentProfile, SegmentUpdate


def update(cid: str, sid: int, name: str) -> SegmentUpdate:
    return SegmentUpdate(customer_id=cid, segment_id=sid, segment_name=name, previous_segment_id=None,
                         distance=1.0, model_version=1, event_ts="2026-01-01T00:00:00.000Z",
                         processed_ts="2026-01-01T00:00:00.001Z")


def catalogued(sid: int, name: str, top: str, z: float) -> CatalogEntry:
    profile = SegmentProfile(segment_id=sid, name=name, size=5, share=0.1, means={top: 1.0},
                             zscores={top: z}, top_features=[top], monetary_mean=1.0, model_version=1)
    return CatalogEntry(segment_id=sid, status="active", model_version=1, name=name, profile=profile,
                        updated_ts="2026-01-01T00:00:00.000Z")


def test_profile__decides_before_the_name_and_respects_the_sign() -> None:
    assert choose_offer("Bargain hunters", catalogued(1, "x", "monetary_30d", 1.5).profile) == \
        "vip-early-access"
    assert choose_offer("Bargain hunters", catalogued(1, "x", "tenure_days", -2.0).profile) == \
        "welcome-guide"
    # a feature with no rule falls back to the name
    assert choose_offer("At-risk", catalogued(1, "x", "pages_per_session", 1.0).profile) == \
        "win-back-15pct"


def test_service__uses_the_catalog_name_and_profile_and_forgets_erased_customers() -> None:
    svc = OfferService()
    assert [d["offer"] for d in svc.handle(update("c1", 2, "Segment 2"))] == ["bestsellers"]
    assert svc.handle(update("c2", 1, "At-risk"))[0]["offer"] == "win-back-15pct"
    # the catalog entry arrives later: segment 2's members are re-decided, others untouched
    assert svc.handle(catalogued(2, "Bargain hunters", "discount_share", 2.0)) == [
        {"customer_id": "c1", "segment_id": 2, "segment_name": "Bargain hunters",
         "offer": "20pct-coupon"}]
    assert svc.handle(catalogued(2, "Bargain hunters", "discount_share", 2.5)) == []  # same offer
    assert svc.handle(Tombstone(kind="customer", key="c1", topic="t")) == [
        {"customer_id": "c1", "offer": None, "forgotten": True}]
    assert svc.offers == {"c2": "win-back-15pct"}
    assert svc.handle(Tombstone(kind="segment", key="2", topic="s")) == []
    assert svc.catalog == {}
