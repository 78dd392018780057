"""Each customer's recent segment changes, kept by the membership script on a real Valkey:
newest first, bounded, written once per change, off at 0, erased with the customer."""

from __future__ import annotations

import orjson
import pytest

from streamseg.events.models import ClickEvent
from streamseg.features.keys import Keys
from streamseg.features.store import Membership, RedisFeatureStore
from streamseg.settings import Settings

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01


def click(cid: str) -> ClickEvent:
    return ClickEvent.model_validate({"event_id": f"{cid}-1", "customer_id": cid, "ts": T0,
                                      "type": "page_view", "session_id": f"{cid}-s"})


def store_keeping(settings: Settings, history: int) -> RedisFeatureStore:
    return RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                      dedup_horizon_days=30, retention_days=30, history=history)


async def history(store: RedisFeatureStore, cid: str) -> list[object]:
    """The customer's history entries as a lookup reads them."""
    ((_, stored),) = await store.lookups([cid])
    return [orjson.loads(e) for e in stored]


def move(cid: str, to: int, was: int | None, n: int) -> Membership:
    """The n-th evaluation of ``cid`` (event time T0 + n ms, model version n)."""
    return Membership(cid, to, was, 0.5, n, "s", ts_ms=T0 + n, cause=f"f{n}")


async def test_moves__are_kept_newest_first_bounded_and_once_per_change(settings: Settings) -> None:
    store = store_keeping(settings, history=3)
    try:
        await store.apply([click("c1")])
        path = [None, 1, 2, 2, 3, 1]  # a re-assignment to segment 2 (n=3) is not a change
        for n in range(1, len(path)):
            await store.write_memberships([move("c1", path[n], path[n - 1], n)])  # type: ignore[arg-type]
            await store.write_memberships([move("c1", path[n], path[n - 1], n)])  # type: ignore[arg-type]
        stored = await history(store, "c1")
        ttl = await store.client.pttl(Keys(settings.key_prefix).history("c1"))
    finally:
        await store.close()
    # each written twice (a redelivered batch): one entry per change; the first assignment fell off
    assert stored == [[T0 + 5, 3, 1, 5, "f5"], [T0 + 4, 2, 3, 4, "f4"], [T0 + 2, 1, 2, 2, "f2"]]
    assert 0 < ttl <= 30 * 86_400_000  # expires with the customer's state


async def test_history_off__writes_no_key(settings: Settings) -> None:
    store = store_keeping(settings, history=0)
    try:
        await store.apply([click("c1")])
        await store.write_memberships([move("c1", 1, None, 1)])
        await store.write_memberships([move("c1", 2, 1, 2)])
        assert (await store.state("c1"))["seg"] == 2.0
        assert not await store.client.exists(Keys(settings.key_prefix).history("c1"))
    finally:
        await store.close()


async def test_forget__erases_the_history_and_reports_its_key(settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    store = store_keeping(settings, history=20)
    try:
        await store.apply([click("c1")])
        await store.write_memberships([move("c1", 1, None, 1)])
        gone = await store.forget("c1")
        left = await store.client.exists(keys.history("c1"))
        again = await store.forget("c1")  # a retried erasure (audit not yet out) still reports it
    finally:
        await store.close()
    assert sorted(gone.removed_keys) == sorted([keys.state("c1"), keys.seen("c1"), keys.history("c1")])
    assert left == 0 and keys.history("c1") in again.removed_keys


async def test_lookups__read_state_and_history_alike_through_hiredis_and_redis_py(
        settings: Settings) -> None:
    lean = store_keeping(settings, history=20)
    plain = RedisFeatureStore(lean.client, lean.keys, dedup_horizon_days=30, retention_days=30)
    try:
        await lean.apply([click("c1"), click("c2")])
        await lean.write_memberships([move("c1", 1, None, 1), move("c1", 2, 1, 2)])
        got = await lean.lookups(["c1", "c2", "nobody"])
        assert got == await plain.lookups(["c1", "c2", "nobody"])  # TLS URLs read through redis-py
    finally:
        await lean.close()
    (state, hist), (_, none_yet), unknown = got
    assert state["seg"] == 2.0 and [orjson.loads(e)[2] for e in hist] == [2, 1]
    assert none_yet == [] and unknown == ({}, [])
