"""streamseg on a Redis Cluster: 3 Valkey masters + 3 replicas on loopback.

* the store's every operation on the cluster: batches equal one clean pass, the
  per-slot segment sizes sum to the memberships, held and re-scoring sets split
  over buckets read back whole, and no master takes more than half of the
  commands;
* a master killed (``kill -9``) while batches are applied with ``WAIT`` for one
  replica: its replica is promoted and every customer equals one clean pass
  (nothing acknowledged was lost, nothing applied twice);
* the real worker (Apache Kafka in, the cluster under it) through the same kill:
  features equal one clean pass and every membership is published.
"""

from __future__ import annotations

import asyncio
import random
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from streamseg.devstack import DevStack
from streamseg.devstack.valkey_cluster import ValkeyCluster, ValkeyNode
from streamseg.errors import StoreUnavailable
from streamseg.events.models import Event
from streamseg.features.cluster import ClusterPlacement, connect
from streamseg.features.keys import Keys
from streamseg.features.reference import accumulate
from streamseg.features.registry import DAY_MS, HALFLIFE_DAYS
from streamseg.features.store import Membership, RedisFeatureStore
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.support import wait_until

from .conftest import unique_settings
from .streams import (
    Workload,
    assert_features_match_reference,
    assert_memberships_published,
    events_seen,
    make_workload,
    model_ready,
    produce_tracked,
    running,
    same_state,
    start_worker,
    wait_drained,
)

pytestmark = pytest.mark.integration
HORIZON_DAYS = 30.0
TOKEN = "ops-token-0123456789abcdef"


@pytest.fixture
async def healthy(valkey_cluster: ValkeyCluster) -> AsyncIterator[ValkeyCluster]:
    """The shared cluster with every node up and in sync (a test before may have killed one)."""
    for node in valkey_cluster.nodes:
        if not node.running:
            node.start()
    await asyncio.to_thread(valkey_cluster.wait_healthy, 60)
    yield valkey_cluster


@pytest.fixture
async def cluster_client(healthy: ValkeyCluster) -> AsyncIterator[RedisCluster]:
    client = connect(healthy.url)
    yield client
    await client.aclose()


def store_on(cluster: ValkeyCluster, prefix: str, wait_replicas: int = 1) -> RedisFeatureStore:
    return RedisFeatureStore.from_url(cluster.url, Keys(prefix), dedup_horizon_days=HORIZON_DAYS,
                                      retention_days=HORIZON_DAYS, halflife_days=HALFLIFE_DAYS,
                                      wait_replicas=wait_replicas)


def store_workload(customers: int, seed: int) -> Workload:
    return make_workload(Settings(dedup_horizon_days=HORIZON_DAYS), customers=customers, seed=seed,
                         days=10)


def batches(wl: Workload, size: int, seed: int) -> list[list[Event]]:
    """Every event in a shuffled order, in batches, each followed by a redelivery of half of it."""
    events = [e for evs in wl.events.values() for e in evs]
    random.Random(seed).shuffle(events)
    out = []
    for i in range(0, len(events), size):
        out += [events[i:i + size], events[i:i + size // 2]]
    return out


async def assert_clean_pass(store: RedisFeatureStore, wl: Workload) -> None:
    cids = list(wl.events)
    got = await store.states(cids)
    wrong = []
    for cid, state in zip(cids, got, strict=True):
        have = {k: v for k, v in state.items() if isinstance(v, float) and not k.startswith("seg")}
        want = accumulate(wl.events[cid], horizon_ms=HORIZON_DAYS * DAY_MS,
                          halflife_ms=HALFLIFE_DAYS * DAY_MS)
        if not same_state(have, want):
            wrong.append((cid, have.get("n_events"), want.get("n_events")))
    assert not wrong, f"{len(wrong)} customers differ from one clean pass: {wrong[:5]}"


def calls_per_master(cluster: ValkeyCluster) -> dict[int, int]:
    """Commands each master has run (INFO commandstats), by port."""
    out = {}
    for port, role in cluster.roles().items():
        if role == "master":
            node = next(n for n in cluster.nodes if n.port == port)
            stats = node.client().info("commandstats")
            out[port] = sum(int(v["calls"]) for k, v in stats.items()
                            if k not in ("cmdstat_info", "cmdstat_cluster", "cmdstat_ping"))
    return out


async def test_store_on_a_cluster__batches_sizes_and_shared_sets_are_whole(healthy: ValkeyCluster) -> None:
    wl = store_workload(customers=300, seed=5)
    store = store_on(healthy, f"k{uuid.uuid4().hex[:8]}")
    cids = list(wl.events)
    before = calls_per_master(healthy)
    try:
        for batch in batches(wl, 200, seed=5):
            await store.apply(batch)
        await assert_clean_pass(store, wl)
        changes = [Membership(cid, i % 3, None, 0.5, 1, "s") for i, cid in enumerate(cids)]
        assert not (await store.write_memberships(changes)).raced
        await store.write_memberships(changes)  # written again: no size counted twice
        want = {s: sum(1 for i in range(len(cids)) if i % 3 == s) for s in range(3)}
        assert await store.segment_sizes() == want
        gone = await store.forget(cids[0])
        assert gone.segment_id == 0 and store.keys.history(cids[0]) in gone.removed_keys
        assert (await store.segments())[1] == {**want, 0: want[0] - 1}
        await store.write_memberships([Membership(cids[1], 2, 1, 0.5, 2, "s", ts_ms=7)])
        ((_, stored),) = await store.lookups([cids[1]])  # read as a lookup does, on its master
        history = [orjson.loads(e) for e in stored]
        assert [h[:4] for h in history] == [[7, 1, 2, 2], [0, None, 1, 1]]  # newest first, once each

        await store.hold(cids)
        assert await store.held_count() == len(cids)
        assert len(set(await store.held(50))) == 50
        await store.release(cids[: len(cids) // 2])
        assert await store.held_count() == len(cids) - len(cids) // 2
        stale = await store.stale_states(float("inf"), len(cids))
        assert set(stale) == set(cids[1:])  # the erased customer left the index
        after = calls_per_master(healthy)
    finally:
        await store.close()
    share = {p: (after[p] - before.get(p, 0)) for p in after}
    total = sum(share.values())
    assert max(share.values()) <= total / 2, f"one master ran more than half the commands: {share}"


def promoted(cluster: ValkeyCluster, victim: ValkeyNode) -> bool:
    roles = cluster.roles()
    return victim.port not in roles and list(roles.values()).count("master") == cluster.masters


async def back_as_replica(cluster: ValkeyCluster, victim: ValkeyNode) -> None:
    """Once a replica has taken over from the killed ``victim``, start it again: it rejoins as
    the new master's replica (until then that shard has none, and ``WAIT 1`` holds its writes)."""
    await wait_until(lambda: promoted(cluster, victim), 30, "a replica to take the killed master's slots")
    await asyncio.to_thread(victim.start)
    assert cluster.roles()[victim.port] == "slave"


async def apply_until_done(store: RedisFeatureStore, todo: list[list[Event]]) -> int:
    """Apply each batch, retrying (as the engine does) while the store is unavailable."""
    outages = 0
    for batch in todo:
        while True:
            try:
                await store.apply(batch)
                break
            except StoreUnavailable:
                outages += 1
                await asyncio.sleep(0.2)
    return outages


async def test_master_killed_mid_stream__promoted_replica_has_every_acknowledged_batch(
    healthy: ValkeyCluster,
) -> None:
    wl = store_workload(customers=300, seed=6)
    store = store_on(healthy, f"f{uuid.uuid4().hex[:8]}")
    todo = batches(wl, 100, seed=6)
    victim = healthy.master_of(Keys("x").state(next(iter(wl.events))))
    try:
        await apply_until_done(store, todo[: len(todo) // 2])
        victim.kill()
        applying = asyncio.create_task(apply_until_done(store, todo[len(todo) // 2:]))
        await back_as_replica(healthy, victim)
        assert await applying, "the kill must have been felt"
        await assert_clean_pass(store, wl)
    finally:
        await store.close()


async def test_slots_resharded_while_batches_flow__every_customer_equals_one_clean_pass(
    healthy: ValkeyCluster,
) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    wl = store_workload(customers=200, seed=8)
    store = store_on(healthy, prefix)
    todo = batches(wl, 50, seed=8)
    slots = sorted({key_slot(Keys(prefix).state(c).encode()) for c in list(wl.events)[:6]})
    owners = {s: healthy.master_of_slot(s).port for s in slots}
    try:
        await apply_until_done(store, todo[: len(todo) // 4])

        def reshard() -> None:
            for s in slots:
                healthy.move_slot(s)

        moving = asyncio.create_task(asyncio.to_thread(reshard))
        i = len(todo) // 4
        while i < len(todo) or not moving.done():  # batches (redelivered ones past the end) all along
            await apply_until_done(store, [todo[i % len(todo)]])
            i += 1
        await moving
        assert all(healthy.master_of_slot(s).port != owners[s] for s in slots)
        await assert_clean_pass(store, wl)
        await store.write_memberships([Membership(c, 1, None, 0.5, 1, "s") for c in wl.events])
        assert await store.segment_sizes() == {1: len(wl.events)}
    finally:
        await store.close()


def http(settings: Settings, method: str, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{settings.web_port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


async def assert_lookup_and_erasure(settings: Settings, client: RedisCluster, cid: str) -> None:
    """The worker's API answers from the cluster, and erases there (sizes summed over slots)."""
    store = RedisFeatureStore(client, Keys(settings.key_prefix), dedup_horizon_days=1, retention_days=1,
                              placement=ClusterPlacement(Keys(settings.key_prefix)))
    stored = int(float(await client.hget(Keys(settings.key_prefix).state(cid), "seg")))
    status, body = await asyncio.to_thread(http, settings, "GET", f"/v1/customers/{cid}")
    assert status == 200 and body["segment_id"] == stored, body
    sizes = await store.segment_sizes()
    status, body = await asyncio.to_thread(http, settings, "DELETE", f"/v1/customers/{cid}")
    assert status == 200 and body["segment_id"] == stored, body
    assert await store.segment_sizes() == {**sizes, stored: sizes[stored] - 1}
    status, _ = await asyncio.to_thread(http, settings, "GET", f"/v1/customers/{cid}")
    assert status == 404


async def test_worker_on_a_cluster__rides_through_a_master_kill(
    stack: DevStack, healthy: ValkeyCluster, cluster_client: RedisCluster, tmp_path: Path,
) -> None:
    settings = unique_settings(stack, redis_url=healthy.url, redis_wait_replicas=1,
                               api_tokens=f"ops:{TOKEN}")
    await ensure_topics(settings)
    wl = make_workload(settings, customers=120, seed=21)
    first, rest = wl.chunks(0.5)
    victim = healthy.master_of(Keys(settings.key_prefix).state(next(iter(wl.events))))
    worker = start_worker(settings, tmp_path, "worker")
    with running(worker):
        await produce_tracked(settings, first)
        await wait_until(lambda: events_seen(settings.web_port, "processed") >= 200 and
                         model_ready(settings.web_port), 90, "the worker to be ready")
        victim.kill()
        await produce_tracked(settings, rest)
        await back_as_replica(healthy, victim)
        await wait_drained(settings, len(wl.records), [worker], timeout=180)
        assert "failed (Redis" in worker.log(), "the kill must have been felt (and retried)"
        await assert_features_match_reference(settings, cluster_client, wl)  # type: ignore[arg-type]
        await assert_memberships_published(settings, cluster_client, wl)  # type: ignore[arg-type]
        await assert_lookup_and_erasure(settings, cluster_client, next(iter(wl.events)))
    assert healthy.roles()[victim.port] == "slave"


async def test_wait_for_a_replica_that_does_not_exist__acknowledges_nothing(stack: DevStack) -> None:
    """A single Valkey has no replica: with ``wait_replicas=1`` every batch is an outage."""
    wl = store_workload(customers=3, seed=7)
    store = RedisFeatureStore.from_url(stack.redis_url, Keys(f"w{uuid.uuid4().hex[:8]}"),
                                       dedup_horizon_days=HORIZON_DAYS, retention_days=HORIZON_DAYS,
                                       wait_replicas=1)
    store.durable.timeout_ms = 50
    try:
        with pytest.raises(StoreUnavailable, match="reached 0 of 1 replicas"):
            await store.apply(batches(wl, 100, seed=7)[0])
    finally:
        await store.close()
