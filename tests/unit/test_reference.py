"""reference.features (straight from events) agrees with derive(accumulate(...)) on any log.

The two are written independently: one from each feature's definition, one
through the accumulators the Redis script keeps. The integration tests lean
on the first, so this pins it to the second on random logs with duplicates,
late events and any "now".
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from streamseg.events.models import CLICK_TYPES, ClickEvent, Event, TransactionEvent
from streamseg.features.reference import accumulate, features
from streamseg.features.registry import DAY_MS, FEATURES, HALFLIFE_DAYS, NEVER_DAYS, derive

T0 = 1_767_225_600_000
DAY = int(DAY_MS)
HORIZON_MS = 7 * DAY_MS
HALFLIFE_MS = HALFLIFE_DAYS * DAY_MS
COUNTS = {"orders_total", "sessions_total", "events_total"}

clicks = st.builds(
    lambda i, t, typ, s, cat: ClickEvent.model_validate(
        {"event_id": f"c{i}", "customer_id": "c", "ts": T0 + t, "type": typ,
         "session_id": f"s{s}", "category": cat}),
    st.integers(0, 50), st.integers(0, 20 * DAY), st.sampled_from(CLICK_TYPES),
    st.integers(0, 4), st.sampled_from([None, "", "shoes", "bags"]))
orders = st.builds(
    lambda i, t, amt, disc, refund, cats: TransactionEvent.model_validate(
        {"event_id": f"o{i}", "customer_id": "c", "ts": T0 + t, "amount": amt, "currency": "EUR",
         "discount_amount": disc, "refund": refund, "categories": cats}),
    st.integers(0, 50), st.integers(0, 20 * DAY),
    st.floats(0, 1000, allow_nan=False), st.floats(0, 50, allow_nan=False), st.booleans(),
    st.lists(st.sampled_from(["shoes", "bags", "toys", ""]), max_size=3))


@settings(max_examples=150, deadline=None, database=None)
@given(events=st.lists(st.one_of(clicks, orders), max_size=40),
       now_offset=st.integers(-5 * DAY, 400 * DAY))
def test_features_from_events__equal_derive_of_the_accumulated_state(
    events: list[Event], now_offset: int
) -> None:
    now = T0 + 20 * DAY + now_offset
    ref = features(events, now, horizon_ms=HORIZON_MS, halflife_ms=HALFLIFE_MS)
    via_state = derive(accumulate(events, horizon_ms=HORIZON_MS, halflife_ms=HALFLIFE_MS), now)
    assert set(ref) == set(via_state) == {f.name for f in FEATURES}
    for name, value in ref.items():
        if name in COUNTS:
            assert via_state[name] == value, name
        else:
            assert math.isclose(via_state[name], value, rel_tol=1e-9, abs_tol=1e-9), (
                name, via_state[name], value)


def test_features_of_no_events__are_those_of_a_customer_never_seen() -> None:
    f = features([], T0, horizon_ms=HORIZON_MS, halflife_ms=HALFLIFE_MS)
    assert f == derive({}, T0)
    assert f["days_since_last_purchase"] == NEVER_DAYS and f["events_total"] == 0.0
