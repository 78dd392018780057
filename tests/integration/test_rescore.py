"""The re-scoring sweep on real Valkey: silent customers are brought up to "now"."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sklearn.metrics import adjusted_rand_score

from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.events.models import ClickEvent
from streamseg.features.keys import Keys
from streamseg.features.registry import DAY_MS, original_value
from streamseg.features.store import RedisFeatureStore
from streamseg.generate import assign_personas, simulate
from streamseg.metrics import Metrics
from streamseg.rescore import sweep
from streamseg.settings import Settings
from tests.support import Recorder

from .engine_support import store_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01


def click(cid: str, n: int, day: float) -> ClickEvent:
    return ClickEvent.model_validate({"event_id": f"{cid}-{n}", "customer_id": cid,
                                      "ts": T0 + int(day * DAY_MS), "type": "page_view",
                                      "session_id": f"{cid}-s{n}"})


async def test_stale_states__oldest_evaluation_first_and_marking_moves_a_customer_on(
    settings: Settings,
) -> None:
    store = store_for(settings)
    try:
        await store.apply([click("a", 1, 1.0), click("b", 1, 3.0), click("c", 1, 2.0)])
        stale = await store.stale_states(T0 + 2.5 * DAY_MS, limit=10)
        assert list(stale) == ["a", "c"]  # b's newest event is after the cut-off
        assert stale["a"]["last_ts"] == T0 + DAY_MS
        assert list(await store.stale_states(T0 + 10 * DAY_MS, limit=1)) == ["a"]

        await store.mark_scored(["a"], T0 + 5 * DAY_MS)
        assert list(await store.stale_states(T0 + 4 * DAY_MS, limit=10)) == ["c", "b"]
        await store.mark_scored(["a"], T0)  # never moves back
        assert "a" not in await store.stale_states(T0 + 4 * DAY_MS, limit=10)
        await store.apply([click("c", 2, 1.5)])  # an older event does not make c look fresh
        assert "c" in await store.stale_states(T0 + 2.5 * DAY_MS, limit=10)
    finally:
        await store.close()


async def test_stale_states__forgets_customers_whose_state_expired(settings: Settings) -> None:
    store = store_for(settings)
    keys = Keys(settings.key_prefix)
    try:
        await store.apply([click("gone", 1, 1.0), click("kept", 1, 1.0)])
        await store.client.delete(keys.state("gone"), keys.seen("gone"))  # as retention would
        assert list(await store.stale_states(T0 + 2 * DAY_MS, limit=10)) == ["kept"]
        assert await store.client.zscore(keys.scored(), "gone") is None
    finally:
        await store.close()


async def test_forget__removes_the_customer_from_the_re_scoring_index(settings: Settings) -> None:
    store = store_for(settings)
    keys = Keys(settings.key_prefix)
    try:
        await store.apply([click("erased", 1, 1.0), click("kept", 1, 1.0)])
        await store.forget("erased")
        assert await store.client.zscore(keys.scored(), "erased") is None
        assert list(await store.stale_states(T0 + 2 * DAY_MS, limit=10)) == ["kept"]
    finally:
        await store.close()


async def test_sweep__brings_silent_customers_segments_up_to_the_end_of_the_stream(
    settings: Settings,
) -> None:
    """Lapsing customers were last evaluated while active; the sweep sees them silent.

    The in-process engine is its own leader: with a small ``model_sync_events``
    the global model takes in what the sweep learned within the sweep.
    """
    cfg = settings.model_copy(update={"n_segments": 2, "model_warmup": 100, "model_sync_events": 20})
    truth = assign_personas(120, seed=3, weights={"lapsing": 1.0, "loyal_high_spender": 1.0})
    store = store_for(cfg)
    publisher = Recorder()
    engine = Engine(cfg, store, build_segmenter(cfg), publisher, Metrics(CollectorRegistry()))
    events = [InMessage(cfg.topic(ev.topic_role), 0, i, ev.customer_id.encode(), orjson.dumps(ev.payload))
              for i, ev in enumerate(simulate(truth, days=60, end_ms=T0, seed=3))]
    try:
        for i in range(0, len(events), 500):
            await engine.process(events[i : i + 500])
        before = await memberships(store, Keys(cfg.key_prefix), truth)
        published = publisher.updates(cfg)

        report = await sweep(engine, older_than_days=0.0, batch=50)

        after = await memberships(store, Keys(cfg.key_prefix), truth)
        last_event = {m.key.decode(): orjson.loads(m.value)["ts"] for m in events if m.key and m.value}
        assert report.evaluated == sum(ts < engine.clock.clock_ms for ts in last_event.values()) >= 100
        assert not await store.stale_states(engine.clock.clock_ms, limit=10)
        assert report.changed == publisher.updates(cfg) - published > 0
        moved = [truth[c] for c in truth if before[c] != after[c]]
        assert moved.count("lapsing") >= 0.8 * len(moved)  # measured: 45 of 51
        ari_before = adjusted_rand_score([truth[c] for c in truth], [before[c] for c in truth])
        ari_after = adjusted_rand_score([truth[c] for c in truth], [after[c] for c in truth])
        assert ari_before < 0.3 and ari_after > 0.75  # measured: 0.02 -> 0.84
    finally:
        await store.close()


async def test_sweep__is_bounded_per_call(settings: Settings) -> None:
    cfg = settings.model_copy(update={"model_warmup": 2})
    store = store_for(cfg)
    engine = Engine(cfg, store, build_segmenter(cfg), Recorder(), Metrics(CollectorRegistry()))
    body = [orjson.dumps(click(f"c{i}", 1, i / 10).model_dump(by_alias=True)) for i in range(12)]
    try:
        await engine.process([InMessage(cfg.topic_clickstream, 0, i, None, b) for i, b in enumerate(body)])
        first = await sweep(engine, older_than_days=0.0, batch=4, max_customers=6)
        rest = await sweep(engine, older_than_days=0.0, batch=4)
        assert (first.evaluated, rest.evaluated) == (6, 5)  # the newest customer is not stale
    finally:
        await store.close()


async def memberships(store: RedisFeatureStore, keys: Keys, cids: dict[str, str]) -> dict[str, int]:
    out = {}
    for cid in cids:
        state = await store.state(cid)
        out[cid] = int(state["seg"])  # type: ignore[arg-type]
    return out


async def test_sweep_and_refit__learn_from_recently_active_customers_not_long_lapsed_ones(
    settings: Settings,
) -> None:
    """Every silent customer is re-scored and keeps a segment; only those active within
    ``model_active_days`` teach the model, in the sweep and in the leader's re-fit sample:
    a base of long-lapsed customers that grows with every cohort pulled the centres away
    from the active customers (docs/model.md, "Who the segments learn from")."""
    cfg = settings.model_copy(update={"model_warmup": 2, "model_active_days": 30.0})
    store = store_for(cfg)
    engine = Engine(cfg, store, build_segmenter(cfg), Recorder(), Metrics(CollectorRegistry()))
    days = {"lapsed": 0.0, "recent": 80.0, "now": 100.0}  # the clock ends on day 100
    evs = [click(f"{name}{i}", n, day + n / 10) for name, day in days.items() for i in range(6)
           for n in range(3)]
    body = [orjson.dumps(ev.model_dump(by_alias=True)) for ev in sorted(evs, key=lambda e: e.ts_ms)]
    learned: list[dict[str, float]] = []
    real_learn = engine.local.learn
    engine.local.learn = lambda x: (learned.append(x), real_learn(x))[1]  # type: ignore[method-assign]
    try:
        await engine.process([InMessage(cfg.topic_clickstream, 0, i, None, b) for i, b in enumerate(body)])
        learned.clear()
        report = await sweep(engine, older_than_days=1.0, batch=5)
        assert report.evaluated == 12  # lapsed and recent: every silent customer re-scored ...
        assert len(learned) == 6  # ... but only the recently active learned
        assert all(original_value("days_since_last_activity", x["days_since_last_activity"]) < 30
                   for x in learned)
        for i in range(6):  # the long-lapsed keep a segment
            assert isinstance((await store.state(f"lapsed{i}")).get("seg"), float)
        sample = await engine.leader.sample_customers()
        assert (len(sample), sample.n_train) == (18, 12)  # the re-fit's part: recent and now
    finally:
        await store.close()
