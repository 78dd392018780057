"""Which offer a customer gets, from their segment: the catalog profile first, then the name.

>>> choose_offer("Bargain hunters", None)
'20pct-coupon'
>>> choose_offer("Segment 7 (refund_rate +2.1sd)", None)
'bestsellers'
"""

from __future__ import annotations

from streamseg.publish.records import SegmentProfile

#: The most distinguishing feature of a segment (and its direction) -> offer.
BY_FEATURE: dict[tuple[str, int], str] = {
    ("monetary_30d", +1): "vip-early-access",
    ("purchase_frequency_30d", +1): "vip-early-access",
    ("discount_share", +1): "20pct-coupon",
    ("days_since_last_activity", +1): "win-back-15pct",
    ("days_since_last_purchase", +1): "win-back-15pct",
    ("refund_rate", +1): "fit-finder",
    ("email_opens_30d", +1): "newsletter-exclusive",
    ("email_click_rate", +1): "newsletter-exclusive",
    ("tenure_days", -1): "welcome-guide",
    ("product_views_30d", +1): "free-shipping-first-order",
    ("top_category_share", +1): "category-new-arrivals",
}

#: Segment names streamseg hands out (streamseg.segmenting.naming) -> offer.
BY_NAME: dict[str, str] = {
    "High-value loyalists": "vip-early-access",
    "Bargain hunters": "20pct-coupon",
    "Window shoppers": "free-shipping-first-order",
    "New explorers": "welcome-guide",
    "At-risk": "win-back-15pct",
    "Serial returners": "fit-finder",
    "Email responders": "newsletter-exclusive",
    "Category specialists": "category-new-arrivals",
}
DEFAULT = "bestsellers"


def choose_offer(segment_name: str, profile: SegmentProfile | None) -> str:
    """The offer for a member of the segment called ``segment_name``."""
    if profile is not None:
        for feature in profile.top_features:
            sign = 1 if profile.zscores.get(feature, 0.0) >= 0 else -1
            if (feature, sign) in BY_FEATURE:
                return BY_FEATURE[feature, sign]
    return BY_NAME.get(segment_name, DEFAULT)
