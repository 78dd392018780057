"""The feature registry (derive / model_input) and the batch reference accumulator."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.features.reference import CLICK_COUNTER, CLICK_DECAYED, accepted, accumulate
from streamseg.features.registry import (
    DAY_MS,
    FEATURES,
    HALFLIFE_DAYS,
    MODEL_FEATURES,
    NEVER_DAYS,
    decayed,
    derive,
    feature,
    model_input,
    original_value,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = int(DAY_MS)
HALFLIFE_MS = HALFLIFE_DAYS * DAY_MS
RATIO_FEATURES = ("discount_share", "refund_rate", "cart_conversion", "email_click_rate",
                  "top_category_share")
DECAYED = {
    "purchase_frequency_30d": "d_orders",
    "monetary_30d": "d_spend",
    "sessions_30d": "d_sessions",
    "page_views_30d": "d_page_views",
    "product_views_30d": "d_product_views",
    "cart_adds_30d": "d_cart_adds",
    "email_opens_30d": "d_email_opens",
}


# --------------------------------------------------------------------------- derive()


@pytest.mark.parametrize(("name", "key"), DECAYED.items())
def test_decayed_feature__halves_after_each_30_day_half_life(name: str, key: str) -> None:
    state = {"first_ts": 0.0, "last_ts": 10 * DAY_MS, key: 8.0}
    at = [derive(state, (10 + 30 * k) * DAY_MS)[name] for k in range(4)]
    assert at == pytest.approx([8.0, 4.0, 2.0, 1.0])


def test_decayed__is_referenced_to_last_ts_and_never_grows_before_it() -> None:
    state = {"last_ts": 100 * DAY_MS, "d_orders": 3.0}
    assert decayed(state, "d_orders", 100 * DAY_MS) == 3.0
    assert decayed(state, "d_orders", 50 * DAY_MS) == 3.0  # "now" before last_ts: no growth
    assert decayed(state, "d_orders", 115 * DAY_MS) == pytest.approx(3.0 / math.sqrt(2))
    assert decayed(state, "d_orders", 110 * DAY_MS, halflife_days=10) == pytest.approx(1.5)
    assert decayed(state, "missing", 200 * DAY_MS) == 0.0


def test_recency_and_tenure__are_in_days_from_last_and_first_event() -> None:
    state = {"first_ts": 2 * DAY_MS, "last_ts": 10 * DAY_MS, "last_purchase_ts": 4 * DAY_MS}
    f = derive(state, now_ms=12.5 * DAY_MS)
    assert f["days_since_last_activity"] == pytest.approx(2.5)
    assert f["tenure_days"] == pytest.approx(10.5)
    assert f["days_since_last_purchase"] == pytest.approx(8.5)


def test_recency__is_never_negative_when_now_is_before_the_last_event() -> None:
    f = derive({"first_ts": 5 * DAY_MS, "last_ts": 10 * DAY_MS, "last_purchase_ts": 9 * DAY_MS},
               now_ms=1 * DAY_MS)
    assert f["days_since_last_activity"] == 0.0
    assert f["tenure_days"] == 0.0
    assert f["days_since_last_purchase"] == 0.0


def test_days_since_last_purchase__is_never_days_without_a_purchase() -> None:
    f = derive({"first_ts": 0.0, "last_ts": DAY_MS, "n_page_views": 3.0}, now_ms=2 * DAY_MS)
    assert f["days_since_last_purchase"] == NEVER_DAYS


def test_days_since_last_purchase__is_capped_at_never_days() -> None:
    f = derive({"last_purchase_ts": 0.0, "last_ts": 0.0}, now_ms=(NEVER_DAYS + 100) * DAY_MS)
    assert f["days_since_last_purchase"] == NEVER_DAYS
    assert f["days_since_last_activity"] == NEVER_DAYS + 100  # activity recency is not capped


@pytest.mark.parametrize(
    ("n_refunds", "n_orders", "expected"),
    [(0, 0, 0.0), (0, 5, 0.0), (1, 4, 0.25), (2, 2, 1.0), (5, 2, 1.0), (1, 0, 1.0)],
)
def test_refund_rate__is_refunds_per_order_capped_at_1(
    n_refunds: float, n_orders: float, expected: float
) -> None:
    f = derive({"n_refunds": float(n_refunds), "n_orders": float(n_orders)}, now_ms=0.0)
    assert f["refund_rate"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("clicks", "opens", "expected"),
    [(0, 0, 0.0), (3, 0, 0.0), (1, 4, 0.25), (4, 4, 1.0), (10, 2, 1.0)],
)
def test_email_click_rate__is_clicks_per_open_capped_at_1(
    clicks: float, opens: float, expected: float
) -> None:
    f = derive({"n_email_clicks": float(clicks), "n_email_opens": float(opens)}, now_ms=0.0)
    assert f["email_click_rate"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("orders", "carts", "expected"),
    [(0, 0, 0.0), (0, 5, 0.0), (1, 4, 0.25), (3, 3, 1.0), (3, 0, 1.0), (6, 2, 1.0)],
)
def test_cart_conversion__is_orders_over_max_of_orders_and_cart_adds(
    orders: float, carts: float, expected: float
) -> None:
    f = derive({"n_orders": float(orders), "n_cart_adds": float(carts)}, now_ms=0.0)
    assert f["cart_conversion"] == pytest.approx(expected)


def test_discount_share__is_discounts_over_gross() -> None:
    assert derive({"sum_amount": 75.0, "sum_discount": 25.0}, 0.0)["discount_share"] == 0.25
    assert derive({"sum_amount": 0.0, "sum_discount": 10.0}, 0.0)["discount_share"] == 1.0
    assert derive({"sum_amount": 0.0, "sum_discount": 0.0}, 0.0)["discount_share"] == 0.0


def test_top_category_share__is_top_over_total_category_interactions() -> None:
    assert derive({"cat_top": 3.0, "cat_total": 4.0}, 0.0)["top_category_share"] == 0.75
    assert derive({}, 0.0)["top_category_share"] == 0.0


def test_monetary_30d__is_floored_at_zero_when_refunds_exceed_spend() -> None:
    f = derive({"last_ts": 0.0, "d_spend": -50.0, "sum_amount": 10.0, "refund_amount": 60.0}, 0.0)
    assert f["monetary_30d"] == 0.0
    assert f["monetary_total"] == 0.0
    assert derive({"last_ts": 0.0, "d_spend": 50.0}, 0.0)["monetary_30d"] == 50.0


def test_avg_order_value_and_pages_per_session__divide_safely() -> None:
    f = derive({"sum_amount": 90.0, "n_orders": 2.0, "n_page_views": 6.0, "n_product_views": 3.0,
                "n_sessions": 3.0}, 0.0)
    assert (f["avg_order_value"], f["pages_per_session"]) == (45.0, 3.0)
    f = derive({"sum_amount": 90.0, "n_page_views": 4.0}, 0.0)
    assert (f["avg_order_value"], f["pages_per_session"]) == (0.0, 4.0)


def test_lifetime_counters__are_reported_as_is() -> None:
    f = derive({"n_orders": 3.0, "n_sessions": 7.0, "n_events": 42.0, "sum_amount": 100.0,
                "refund_amount": 30.0}, 0.0)
    assert (f["orders_total"], f["sessions_total"], f["events_total"], f["monetary_total"]) == (
        3.0, 7.0, 42.0, 70.0)


def test_derive_of_an_empty_state__is_finite_and_treats_the_customer_as_never_buying() -> None:
    f = derive({}, now_ms=T0)
    assert set(f) == {feat.name for feat in FEATURES}
    assert all(math.isfinite(v) for v in f.values())
    assert f["days_since_last_purchase"] == NEVER_DAYS


def test_derive__ignores_non_numeric_state_values() -> None:
    # Redis hashes also hold text (e.g. category names); they must not break numbers
    f = derive({"n_orders": "oops", "sum_amount": 10.0, "seg": "x"}, 0.0)
    assert f["orders_total"] == 0.0
    assert f["avg_order_value"] == 0.0


# counters are whole numbers; amounts, decayed values and times are floats
COUNTERS = ["n_orders", "n_refunds", "n_cart_adds", "n_email_opens", "n_email_clicks",
            "n_sessions", "n_page_views", "n_product_views"]
AMOUNTS = ["sum_amount", "sum_discount", "refund_amount", "d_orders", "d_spend", "d_sessions",
           "first_ts", "last_ts", "last_purchase_ts"]
STATES = st.dictionaries(
    st.sampled_from(COUNTERS), st.integers(0, 10**7).map(float)
).flatmap(lambda counts: st.dictionaries(
    st.sampled_from(AMOUNTS), st.floats(min_value=0, max_value=1e13, allow_nan=False)
).map(lambda amounts: {**counts, **amounts}))


@settings(max_examples=200, deadline=None, database=None)
@given(state=STATES, now=st.floats(min_value=0, max_value=1e13))
def test_derive_of_any_non_negative_state__is_finite_with_ratios_in_unit_interval(
    state: dict[str, float], now: float
) -> None:
    f = derive(state, now)
    assert all(math.isfinite(v) and v >= 0 for v in f.values()), f
    for name in ("discount_share", "refund_rate", "cart_conversion", "email_click_rate"):
        assert 0.0 <= f[name] <= 1.0, (name, f[name])
    assert f["days_since_last_purchase"] <= NEVER_DAYS
    x = model_input(f)
    assert all(math.isfinite(v) for v in x.values())


# --------------------------------------------------------------------------- model_input()


def test_model_input__log1p_for_counts_sqrt_for_mostly_zero_shares_other_ratios_alone() -> None:
    f = derive({"first_ts": 0.0, "last_ts": 10 * DAY_MS, "n_orders": 2.0, "sum_amount": 90.0,
                "sum_discount": 10.0, "d_orders": 1.5, "n_refunds": 1.0, "n_cart_adds": 4.0},
               now_ms=40 * DAY_MS)
    x = model_input(f)
    assert list(x) == list(MODEL_FEATURES)
    for name in MODEL_FEATURES:
        if feature(name).transform == "log1p":
            assert x[name] == pytest.approx(math.log1p(f[name])), name
        elif feature(name).transform == "sqrt":
            assert x[name] == pytest.approx(math.sqrt(f[name])), name
        else:
            assert x[name] == f[name], name
    assert x["days_since_last_activity"] == pytest.approx(math.log1p(30.0))
    assert x["refund_rate"] == pytest.approx(math.sqrt(0.5))
    assert x["discount_share"] == pytest.approx(math.sqrt(0.1))
    assert x["cart_conversion"] == 0.5


def test_model_input__clamps_negative_log1p_inputs_to_zero() -> None:
    f = dict.fromkeys(MODEL_FEATURES, 0.0) | {"monetary_30d": -5.0, "refund_rate": 0.25}
    x = model_input(f)
    assert x["monetary_30d"] == 0.0
    assert x["refund_rate"] == 0.5


@pytest.mark.parametrize("name", MODEL_FEATURES)
def test_original_value__undoes_the_model_transform(name: str) -> None:
    for v in (0.0, 0.25, 1.0, 37.5):
        x = model_input(dict.fromkeys(MODEL_FEATURES, v))[name]
        assert original_value(name, x) == pytest.approx(v), (name, v)


def test_model_input__excludes_reported_only_features() -> None:
    x = model_input(derive({"n_orders": 3.0}, 0.0))
    assert "orders_total" not in x and "events_total" not in x


def test_model__leaves_out_features_that_restate_another_dimension() -> None:
    # views and cart adds move with sessions; "never bought" placeholders (365 days,
    # mean order value 0) would count one fact several times in a Euclidean distance
    restating = {"page_views_30d", "product_views_30d", "cart_adds_30d",
                 "days_since_last_purchase", "avg_order_value"}
    assert restating.isdisjoint(MODEL_FEATURES)
    assert all(name in derive({}, 0.0) for name in restating)  # still derived and reported


# --------------------------------------------------------------------------- the registry itself


def test_model_features__all_exist_in_features_and_are_in_model() -> None:
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names)), "feature names must be unique"
    assert set(MODEL_FEATURES) <= set(names)
    assert list(MODEL_FEATURES) == [f.name for f in FEATURES if f.in_model]
    assert {"orders_total", "monetary_total", "sessions_total", "events_total"}.isdisjoint(
        MODEL_FEATURES)


@pytest.mark.parametrize("feat", FEATURES, ids=lambda f: f.name)
def test_every_feature__documents_unit_window_and_description(feat: Any) -> None:
    assert feat.unit.strip() and feat.window.strip() and len(feat.description.strip()) >= 5
    assert feat.source in ("click", "transaction", "any")
    assert feat.transform in ("none", "log1p", "sqrt")
    assert feature(feat.name) is feat


@pytest.mark.parametrize("name", RATIO_FEATURES)
def test_ratio_features__are_not_log_transformed(name: str) -> None:
    assert feature(name).unit == "ratio"
    assert feature(name).transform in ("none", "sqrt")


def test_decayed_features__say_their_half_life_in_the_window() -> None:
    for name in DECAYED:
        assert "30-day half-life" in feature(name).window, name


def test_unknown_feature_name__raises_key_error() -> None:
    with pytest.raises(KeyError):
        feature("no_such_feature")


# --------------------------------------------------------------------------- reference.accumulate()

HORIZON_MS = 7 * DAY
BIG_HORIZON_MS = 400 * DAY


def order(eid: str, ts: int, amount: float = 10.0, **kw: Any) -> TransactionEvent:
    return TransactionEvent.model_validate(
        {"event_id": eid, "customer_id": "c", "ts": ts, "amount": amount, "currency": "EUR", **kw})


def clk(eid: str, ts: int, type_: str = "page_view", session: str = "s1", **kw: Any) -> ClickEvent:
    return ClickEvent.model_validate(
        {"event_id": eid, "customer_id": "c", "ts": ts, "type": type_, "session_id": session, **kw})


def acc(events: list[Event], horizon_ms: float = BIG_HORIZON_MS) -> dict[str, float]:
    return accumulate(events, horizon_ms=horizon_ms, halflife_ms=HALFLIFE_MS)


def test_accumulate_of_nothing__is_an_empty_state() -> None:
    assert acc([]) == {}


def test_accumulate__counts_duplicate_event_ids_once_keeping_the_first() -> None:
    st_ = acc([order("o1", T0, 10.0), order("o1", T0 + DAY, 99.0), order("o2", T0, 5.0)])
    assert st_["n_orders"] == 2.0
    assert st_["sum_amount"] == 15.0
    assert st_["n_events"] == 2.0
    assert st_["last_ts"] == T0  # the duplicate's later ts is not applied either


def test_accumulate__drops_events_older_than_the_horizon_relative_to_the_newest_accepted() -> None:
    evs = [order("new", T0), order("late", T0 - 8 * DAY, 100.0), order("ok", T0 - 6 * DAY, 1.0)]
    st_ = acc(evs, horizon_ms=HORIZON_MS)
    assert st_["n_orders"] == 2.0
    assert st_["sum_amount"] == 11.0
    assert st_["first_ts"] == T0 - 6 * DAY
    assert [e.event_id for e in accepted(evs, HORIZON_MS)] == ["new", "ok"]


def test_accumulate__keeps_an_old_event_that_arrived_before_newer_ones() -> None:
    # the horizon is relative to the newest event *accepted so far*, in arrival order
    st_ = acc([order("old", T0 - 30 * DAY), order("new", T0)], horizon_ms=HORIZON_MS)
    assert st_["n_orders"] == 2.0
    assert st_["first_ts"] == T0 - 30 * DAY


def test_accumulate__event_exactly_at_the_horizon_is_kept() -> None:
    st_ = acc([order("new", T0), order("edge", T0 - HORIZON_MS)], horizon_ms=HORIZON_MS)
    assert st_["n_orders"] == 2.0


def test_accumulate__decays_weights_relative_to_the_newest_event() -> None:
    st_ = acc([order("a", T0 - 60 * DAY, 40.0), order("b", T0, 10.0), order("c", T0 - 30 * DAY, 20.0)])
    assert st_["last_ts"] == T0
    assert st_["d_orders"] == pytest.approx(1.0 + 0.5 + 0.25)
    assert st_["d_spend"] == pytest.approx(10.0 + 20.0 * 0.5 + 40.0 * 0.25)
    assert st_["d_events"] == pytest.approx(1.75)
    f = derive(st_, now_ms=T0 + 30 * DAY)
    assert f["purchase_frequency_30d"] == pytest.approx(1.75 / 2)


def test_accumulate__counts_each_session_once_with_the_weight_of_its_earliest_event() -> None:
    st_ = acc([
        clk("v1", T0, session="s1"),
        clk("v2", T0 - 30 * DAY, session="s1"),  # earliest event of s1: weight 0.5
        clk("v3", T0 - 60 * DAY, "product_view", session="s2"),  # weight 0.25
        clk("v4", T0 - 10 * DAY, "login", session="s2"),
    ])
    assert st_["n_sessions"] == 2.0
    assert st_["d_sessions"] == pytest.approx(0.5 + 0.25)
    assert st_["n_page_views"] == 2.0 and st_["n_product_views"] == 1.0 and st_["n_logins"] == 1.0


def test_accumulate__refunds_count_separately_and_reduce_decayed_spend() -> None:
    st_ = acc([order("o", T0 - 30 * DAY, 100.0), order("r", T0, 30.0, refund=True)])
    assert (st_["n_orders"], st_["n_refunds"], st_["refund_amount"]) == (1.0, 1.0, 30.0)
    assert st_["d_spend"] == pytest.approx(100.0 * 0.5 - 30.0)
    assert st_["last_purchase_ts"] == T0 - 30 * DAY  # a refund is not a purchase
    f = derive(st_, now_ms=T0)
    assert f["monetary_30d"] == pytest.approx(20.0)
    assert f["monetary_total"] == 70.0
    assert f["refund_rate"] == 1.0


def test_accumulate__tracks_categories_from_orders_product_views_and_cart_adds() -> None:
    st_ = acc([
        order("o", T0, categories=["shoes", "bags", ""]),
        clk("p", T0, "product_view", category="shoes"),
        clk("a", T0, "add_to_cart", category="shoes"),
        clk("v", T0, "page_view", category="hats"),  # page views do not count
    ])
    assert (st_["c:shoes"], st_["c:bags"]) == (3.0, 1.0)
    assert "c:hats" not in st_ and "c:" not in st_
    assert (st_["cat_top"], st_["cat_total"]) == (3.0, 4.0)
    assert derive(st_, T0)["top_category_share"] == 0.75


def test_accumulate__counts_active_days_and_remembers_the_newest_as_the_script_does() -> None:
    # the script keeps the newest active day (UTC day number) beside the count: its fast path
    st_ = acc([order("b", T0 + 3 * DAY - 1), clk("v", T0 + 3 * DAY + 5), order("a", T0 + 5),
               clk("w", T0 + 3 * DAY + 9), order("late", T0 - 9 * DAY)], horizon_ms=HORIZON_MS)
    assert st_["n_active_days"] == 3.0
    assert st_["active_day"] == T0 // DAY + 3


def test_accumulate__every_click_type_has_a_counter() -> None:
    from streamseg.events.models import CLICK_TYPES

    assert set(CLICK_COUNTER) == set(CLICK_TYPES)
    assert set(CLICK_DECAYED) <= set(CLICK_TYPES)
    evs: list[Event] = [clk(f"e{i}", T0, t) for i, t in enumerate(CLICK_TYPES)]
    st_ = acc(evs)
    assert all(st_[CLICK_COUNTER[t]] == 1.0 for t in CLICK_TYPES)
    assert all(st_[CLICK_DECAYED[t]] == 1.0 for t in CLICK_DECAYED)


@settings(max_examples=100, deadline=None, database=None)
@given(st.permutations(range(6)))
def test_accumulate__is_independent_of_arrival_order_within_the_horizon(order_: list[int]) -> None:
    evs: list[Event] = [
        order("o1", T0 - 2 * DAY, 10.0, categories=["a"]),
        order("o2", T0, 20.0, categories=["b", "a"]),
        order("r1", T0 - DAY, 5.0, refund=True),
        clk("c1", T0 - 3 * DAY, "add_to_cart", session="s1", category="a"),
        clk("c2", T0 - DAY, "page_view", session="s1"),
        clk("c3", T0, "email_open", session="s2"),
    ]
    base = acc(evs, horizon_ms=HORIZON_MS)
    shuffled = acc([evs[i] for i in order_], horizon_ms=HORIZON_MS)
    assert shuffled.keys() == base.keys()
    for k, v in base.items():
        assert shuffled[k] == pytest.approx(v), k
