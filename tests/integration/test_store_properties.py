"""The Redis Lua store against a from-scratch reference, on real Valkey.

Property tests: any arrival order and any duplication of the same events give
the same state; everything matches the batch reference computation; late
events (older than the customer's newest by more than the horizon) are refused
exactly where the reference, applying the horizon in arrival order, says so;
customers sharing a batch never mix; derived features match the reference
computed straight from the events; an event on the newest active day reads
nothing from the zset, and the active days stay exact around it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.features.keys import Keys
from streamseg.features.reference import accumulate
from streamseg.features.reference import features as reference_features
from streamseg.features.registry import DAY_MS, HALFLIFE_DAYS, derive
from streamseg.features.store import RedisFeatureStore

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01
HORIZON_DAYS = 7.0
SPAN_MS = int(5 * DAY_MS)  # stay inside the dedup horizon: order must not matter


def click_events(cid: str) -> st.SearchStrategy[Event]:
    return st.builds(
        lambda i, t, typ, s, cat: ClickEvent.model_validate(
            {"event_id": f"c{i}", "customer_id": cid, "ts": T0 + t, "type": typ,
             "session_id": f"s{s}", "category": cat}),
        st.integers(0, 10_000), st.integers(0, SPAN_MS),
        st.sampled_from(["page_view", "product_view", "add_to_cart", "email_open", "email_click",
                         "search", "login"]),
        st.integers(0, 5), st.sampled_from([None, "shoes", "bags", "toys"]),
    )


def txn_events(cid: str) -> st.SearchStrategy[Event]:
    return st.builds(
        lambda i, t, amt, disc, refund, cats: TransactionEvent.model_validate(
            {"event_id": f"o{i}", "customer_id": cid, "ts": T0 + t, "amount": amt, "currency": "EUR",
             "discount_amount": disc, "refund": refund, "categories": cats}),
        st.integers(0, 10_000), st.integers(0, SPAN_MS),
        st.floats(0, 5_000, allow_nan=False).map(lambda v: round(v, 2)),
        st.floats(0, 100, allow_nan=False).map(lambda v: round(v, 2)),
        st.booleans(), st.lists(st.sampled_from(["shoes", "bags", "toys"]), max_size=3),
    )


def unique_by_id(events: list[Event]) -> list[Event]:
    return list({e.event_id: e for e in events}.values())


def new_store(redis_url: str) -> RedisFeatureStore:
    return RedisFeatureStore.from_url(redis_url, Keys(f"p{uuid.uuid4().hex[:8]}"),
                                      dedup_horizon_days=HORIZON_DAYS, retention_days=1)


async def state_after(redis_url: str, batches: list[list[Event]]) -> dict[str, float]:
    store = new_store(redis_url)
    try:
        for b in batches:
            await store.apply(b)
        raw = await store.state("c")
    finally:
        await store.close()
    return {k: v for k, v in raw.items() if isinstance(v, float)}


def assert_same_state(a: dict[str, float], b: dict[str, float]) -> None:
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        if k.startswith("d_"):
            assert math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-9), (k, a[k], b[k])
        else:
            assert a[k] == pytest.approx(b[k], rel=1e-12), (k, a[k], b[k])


events_strategy = st.lists(st.one_of(click_events("c"), txn_events("c")), min_size=1, max_size=40).map(
    unique_by_id
)
HSET = hsettings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@HSET
@given(events=events_strategy, data=st.data())
def test_any_arrival_order__gives_the_reference_state(stack, events, data) -> None:
    order = data.draw(st.permutations(events))
    cut = data.draw(st.integers(0, len(order)))
    got = asyncio.run(state_after(stack.redis_url, [order[:cut], order[cut:]]))
    want = accumulate(events, horizon_ms=HORIZON_DAYS * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
    assert_same_state(got, want)


@HSET
@given(events=events_strategy, data=st.data())
def test_duplicated_events__change_nothing(stack, events, data) -> None:
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=20))
    once = asyncio.run(state_after(stack.redis_url, [events]))
    twice = asyncio.run(state_after(stack.redis_url, [events + dupes, dupes, events]))
    assert_same_state(once, twice)


def test_replayed_batch__is_counted_once_and_reported_duplicate(stack) -> None:
    evs = [TransactionEvent.model_validate({"event_id": f"o{i}", "customer_id": "c", "ts": T0 + i,
                                            "amount": 10.0, "currency": "EUR"}) for i in range(3)]

    async def run() -> tuple[list[str], list[str], dict]:
        store = new_store(stack.redis_url)
        try:
            first = await store.apply(evs)
            second = await store.apply(evs)
            return first["c"].statuses, second["c"].statuses, second["c"].state
        finally:
            await store.close()

    first, second, state = asyncio.run(run())
    assert first == ["applied"] * 3 and second == ["duplicate"] * 3
    assert state["n_orders"] == 3.0 and state["sum_amount"] == 30.0


def test_event_older_than_the_horizon__is_refused_as_late(stack) -> None:
    new = TransactionEvent.model_validate({"event_id": "new", "customer_id": "c", "ts": T0 + 30 * DAY_MS,
                                           "amount": 5.0, "currency": "EUR"})
    old = TransactionEvent.model_validate({"event_id": "old", "customer_id": "c", "ts": T0,
                                           "amount": 7.0, "currency": "EUR"})
    inside = TransactionEvent.model_validate({"event_id": "in", "customer_id": "c",
                                              "ts": T0 + 25 * DAY_MS, "amount": 1.0, "currency": "EUR"})

    async def run() -> tuple[list[str], dict]:
        store = new_store(stack.redis_url)
        try:
            await store.apply([new])
            upd = await store.apply([old, inside])
            return upd["c"].statuses, upd["c"].state
        finally:
            await store.close()

    statuses, state = asyncio.run(run())
    assert statuses == ["late", "applied"]
    assert state["sum_amount"] == 6.0 and state["last_ts"] == T0 + 30 * DAY_MS
    feats = derive(state, now_ms=T0 + 30 * DAY_MS)
    assert feats["days_since_last_purchase"] == 0.0 and feats["orders_total"] == 2.0


def test_active_days__count_each_utc_day_with_any_event_once(stack) -> None:
    # day 0: a visit and an order; day 1: a refund only; day 2: two visits, one sent twice
    def click(i: str, ts: float) -> Event:
        return ClickEvent.model_validate({"event_id": i, "customer_id": "c", "ts": ts,
                                          "type": "page_view", "session_id": f"s{i}"})

    def txn(i: str, ts: float, refund: bool) -> Event:
        return TransactionEvent.model_validate({"event_id": i, "customer_id": "c", "ts": ts,
                                                "amount": 10.0, "currency": "EUR", "refund": refund})

    day0 = [click("v0", T0 + 1_000), txn("o0", T0 + DAY_MS - 1, False)]
    day1 = [txn("r1", T0 + DAY_MS, True)]
    day2 = [click("v2", T0 + 2 * DAY_MS + 5), click("v3", T0 + 3 * DAY_MS - 1)]

    async def run() -> dict:
        store = new_store(stack.redis_url)
        try:
            await store.apply(day2[:1])
            await store.apply(day1 + day0)
            upd = await store.apply(day2 + day0)  # one new event, three duplicates
            return upd["c"].state
        finally:
            await store.close()

    state = asyncio.run(run())
    assert state["n_active_days"] == 3.0 and state["n_purchase_days"] == 1.0
    assert state["first_ts"] == T0 + 1_000 and state["last_ts"] == T0 + 3 * DAY_MS - 1


# --- the newest active day (``active_day``): events on it skip the zset ---

DAY = int(DAY_MS)
D0 = T0 // DAY  # T0's UTC day number


def refund(i: str, day: int, at: int = 1_000) -> Event:
    """A refund ``at`` ms into day ``D0 + day``: the script reads no zset member for a refund
    but its active day's (no session, no purchase day), so ZSCORE counts only that one."""
    return TransactionEvent.model_validate({"event_id": i, "customer_id": "c",
                                            "ts": T0 + day * DAY + at, "amount": 1.0,
                                            "currency": "EUR", "refund": True})


def active(state: dict) -> tuple[float, float]:
    return state["n_active_days"], state["active_day"]


async def zscores_while(store: RedisFeatureStore, events: list[Event]) -> tuple[int, int]:
    """ZSCOREs and script calls Valkey ran while ``events`` were applied (INFO commandstats
    counts the commands a script runs)."""
    await store.client.config_resetstat()
    await store.apply(events)
    stats = await store.client.info("commandstats")
    calls = {k: int(v["calls"]) for k, v in stats.items()}
    return calls.get("cmdstat_zscore", 0), calls.get("cmdstat_evalsha", 0) + calls.get("cmdstat_eval", 0)


def test_events_on_one_day__count_one_active_day_and_remember_it(stack) -> None:
    async def run() -> tuple[dict, list]:
        store = new_store(stack.redis_url)
        try:
            await store.apply([refund("r0", 0), refund("r1", 0, 2_000)])
            for i in range(2, 6):
                await store.apply([refund(f"r{i}", 0, i * 1_000)])
            members = await store.client.zrange(store.keys.seen("c"), 0, -1)
            return await store.state("c"), [m for m in members if m.startswith(b"a:")]
        finally:
            await store.close()

    state, days = asyncio.run(run())
    assert state["n_events"] == 6.0
    assert active(state) == (1.0, D0)
    assert days == [b"a:%d" % D0]


def test_an_event_on_an_older_day__is_counted_once_and_the_newest_active_day_stays(stack) -> None:
    order = [refund("new", 3), refund("old", 1), refund("old2", 1, 5_000), refund("new2", 3, 5_000)]

    async def run() -> list[dict]:
        store = new_store(stack.redis_url)
        try:
            return [(await store.apply([ev]))["c"].state for ev in order]
        finally:
            await store.close()

    states = asyncio.run(run())
    assert [active(s) for s in states] == [(1.0, D0 + 3), (2.0, D0 + 3), (2.0, D0 + 3), (2.0, D0 + 3)]
    want = accumulate(order, horizon_ms=HORIZON_DAYS * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
    assert_same_state({k: v for k, v in states[-1].items() if isinstance(v, float)}, want)


def test_duplicate_and_late_events__leave_the_active_days_alone(stack) -> None:
    async def run() -> tuple[dict, list[str], dict]:
        store = new_store(stack.redis_url)
        try:
            await store.apply([refund("a", 5), refund("b", 10)])
            before = await store.state("c")
            upd = (await store.apply([refund("b", 10), refund("a", 5), refund("late", 1)]))["c"]
            return before, upd.statuses, await store.state("c")
        finally:
            await store.close()

    before, statuses, after = asyncio.run(run())
    assert statuses == ["duplicate", "duplicate", "late"]
    assert active(before) == (2.0, D0 + 10)
    assert after == before


def test_a_state_stored_before_active_day__takes_the_slow_path_and_counts_exactly(stack) -> None:
    first = [refund("d0", 0), refund("d1", 1)]
    then = [refund("d0b", 0, 9_000), refund("d1b", 1, 9_000), refund("d2", 2)]

    async def run() -> list[tuple[float, float]]:
        store = new_store(stack.redis_url)
        try:
            await store.apply(first)
            await store.client.hdel(store.keys.state("c"), "active_day")  # as the old script left it
            return [active((await store.apply([ev]))["c"].state) for ev in then]
        finally:
            await store.close()

    # the older day is found counted (and remembered, for want of a newer one); the newest is
    # found counted too and remembered again; a new day is counted
    assert asyncio.run(run()) == [(2.0, D0), (2.0, D0 + 1), (3.0, D0 + 2)]


def test_an_event_on_the_newest_active_day__reads_nothing_from_the_zset(stack) -> None:
    async def run() -> list[tuple[int, int]]:
        store = new_store(stack.redis_url)
        try:
            await store.apply([refund("a", 0)])
            same_day = await zscores_while(store, [refund("b", 0, 2_000)])
            new_day = await zscores_while(store, [refund("c", 1)])
            older_day = await zscores_while(store, [refund("d", 0, 3_000)])
            await store.client.hdel(store.keys.state("c"), "active_day")
            unknown = await zscores_while(store, [refund("e", 1, 2_000)])
            again = await zscores_while(store, [refund("f", 1, 3_000)])
            return [same_day, new_day, older_day, unknown, again]
        finally:
            await store.close()

    # (ZSCOREs, script calls): one script call each; the zset is read only off the newest day
    assert asyncio.run(run()) == [(0, 1), (1, 1), (1, 1), (1, 1), (0, 1)]


def test_customer_keys__expire_after_the_retention_horizon(stack) -> None:
    async def run() -> tuple[int, int]:
        store = new_store(stack.redis_url)
        try:
            await store.apply([ClickEvent.model_validate({"event_id": "e", "customer_id": "c", "ts": T0,
                                                          "type": "login", "session_id": "s"})])
            return (await store.client.ttl(store.keys.state("c")),
                    await store.client.ttl(store.keys.seen("c")))
        finally:
            await store.close()

    ttl_state, ttl_seen = asyncio.run(run())
    assert 0 < ttl_state <= 86_400 and 0 < ttl_seen <= 86_400


# --- late events, many customers, features: arrival order matters only through the horizon ---

LONG_SPAN_MS = int(20 * DAY_MS)  # well beyond the 7-day horizon: some arrivals are late


def long_span_events(cid: str) -> st.SearchStrategy[list[Event]]:
    """Events over 20 days; a session lives within one day, as real sessions do (the store
    forgets a session with its ids once it falls behind the horizon)."""
    click = st.builds(
        lambda i, t, typ, cat: ClickEvent.model_validate(
            {"event_id": f"{cid}-c{i}", "customer_id": cid, "ts": T0 + t, "type": typ,
             "session_id": f"{cid}-s{t // int(DAY_MS)}", "category": cat}),
        st.integers(0, 10_000), st.integers(0, LONG_SPAN_MS),
        st.sampled_from(["page_view", "product_view", "add_to_cart", "email_open", "email_click"]),
        st.sampled_from([None, "shoes", "bags"]))
    order = st.builds(
        lambda i, t, amt, refund: TransactionEvent.model_validate(
            {"event_id": f"{cid}-o{i}", "customer_id": cid, "ts": T0 + t, "amount": amt,
             "currency": "EUR", "refund": refund, "categories": ["toys"]}),
        st.integers(0, 10_000), st.integers(0, LONG_SPAN_MS),
        st.floats(0, 5_000, allow_nan=False).map(lambda v: round(v, 2)), st.booleans())
    return st.lists(st.one_of(click, order), min_size=1, max_size=30).map(unique_by_id)


def split(events: list[Event], cuts: list[int]) -> list[list[Event]]:
    """``events`` cut into consecutive batches at the given positions."""
    bounds = [0, *sorted(c % (len(events) + 1) for c in cuts), len(events)]
    return [events[a:b] for a, b in itertools.pairwise(bounds)]


async def states_after(redis_url: str, batches: list[list[Event]], cids: list[str]) -> dict[str, dict]:
    store = new_store(redis_url)
    try:
        for b in batches:
            await store.apply(b)
        return {c: {k: v for k, v in (await store.state(c)).items() if isinstance(v, float)}
                for c in cids}
    finally:
        await store.close()


@HSET
@given(events=long_span_events("c"), data=st.data())
def test_late_events_in_any_arrival_order__are_refused_exactly_as_the_reference_says(
    stack, events, data
) -> None:
    order = data.draw(st.permutations(events))
    cuts = data.draw(st.lists(st.integers(0, 100), max_size=4))
    got = asyncio.run(states_after(stack.redis_url, split(order, cuts), ["c"]))["c"]
    # the reference applies the horizon in arrival order, as the store must
    want = accumulate(order, horizon_ms=HORIZON_DAYS * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
    assert_same_state(got, want)


def test_a_session_whose_start_fell_behind_the_horizon__is_not_counted_again_by_its_later_events(
    stack,
) -> None:
    # hypothesis found it in CI: the session's first event at T0, a week and 1 ms later another
    # session, then (next batch) the first session's events 410 ms after its start, on time
    def click(i: int, ts: int, session: str) -> Event:
        return ClickEvent.model_validate({"event_id": f"c-{i}", "customer_id": "c", "ts": ts,
                                          "type": "page_view", "session_id": session})

    horizon = int(HORIZON_DAYS * DAY_MS)
    order = [click(0, T0, "s0"), click(1, T0 + horizon + 1, "s7"), click(2, T0 + 410, "s0"),
             click(3, T0 + 9_708, "s0")]
    got = asyncio.run(states_after(stack.redis_url, [order[:2], order[2:]], ["c"]))["c"]
    want = accumulate(order, horizon_ms=HORIZON_DAYS * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
    assert want["n_sessions"] == 2.0
    assert_same_state(got, want)


@HSET
@given(a=long_span_events("a"), b=long_span_events("b"), c=long_span_events("c"), data=st.data())
def test_customers_sharing_batches__each_match_their_own_reference(stack, a, b, c, data) -> None:
    order = data.draw(st.permutations(a + b + c))
    cuts = data.draw(st.lists(st.integers(0, 100), max_size=4))
    got = asyncio.run(states_after(stack.redis_url, split(order, cuts), ["a", "b", "c"]))
    for cid in ("a", "b", "c"):
        mine = [e for e in order if e.customer_id == cid]
        want = accumulate(mine, horizon_ms=HORIZON_DAYS * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
        assert_same_state(got[cid], want)


@HSET
@given(events=events_strategy, data=st.data())
def test_features_from_the_store__match_the_independent_reference_at_any_later_now(
    stack, events, data
) -> None:
    order = data.draw(st.permutations(events))
    gap = data.draw(st.integers(0, int(400 * DAY_MS)))
    state = asyncio.run(state_after(stack.redis_url, [order]))
    now = max(e.ts_ms for e in events) + gap
    got = derive(state, now)
    want = reference_features(events, now, horizon_ms=HORIZON_DAYS * DAY_MS,
                              halflife_ms=HALFLIFE_DAYS * DAY_MS)
    assert set(got) == set(want)
    for name, value in want.items():
        assert math.isclose(got[name], value, rel_tol=1e-9, abs_tol=1e-9), (name, got[name], value)
