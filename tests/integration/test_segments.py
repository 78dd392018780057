"""Segments people can trust, on the real broker and Valkey with real worker processes:
catalog and lifecycle, reasons, persistence across a restart, one model across two workers."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from streamseg.devstack import free_port
from streamseg.publish.records import CatalogEntry, SegmentUpdate, now_iso
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS as DAY
from streamseg.timeunits import HOUR_MS as HOUR
from streamseg.topics import ensure_topics
from tests.support import wait_until

from .conftest import WorkerProcess, consume, produce
from .streams import read_topic
from .test_worker_end_to_end import fetch, processed_count

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
#: Each part's history starts at 01:00 UTC, so its hours never straddle midnight: the leader's
#: steps of history fall on a 24 h grid at midnight, and ``produce`` sends customer after
#: customer, not in event-time order, so a step inside the span would fit on customers whose
#: later orders had not been read yet (and these tests want whole customers before a first
#: model). With ``NOW_MS`` in the base, whether one did depended on the time of day.
BASE_MS = NOW_MS - NOW_MS % DAY + HOUR
GROUPS = 3
# Every customer of this toy workload changes at once, in bursts, and the online
# clusterer learns each half-applied state (clicks before orders); a small online
# step keeps the local model from chasing those bursts between refits.
STEADY = {"kmeans_halflife": 0.01}


def group_of(cid: str) -> int:
    return int(cid[1:]) % GROUPS


def touch(settings: Settings, customers: int = 60, day0: int = 40,
          part: int = 2) -> list[tuple[str, bytes, bytes]]:
    """One more page view per customer: re-evaluates everyone, barely moves anyone."""
    base = BASE_MS - DAY * day0 + (part - 1) * 10 * DAY + 6 * HOUR
    return [(settings.topic_clickstream, f"c{c:04d}".encode(), orjson.dumps({
        "event_id": f"c{c:04d}-touch{part}", "customer_id": f"c{c:04d}", "ts": base,
        "type": "page_view", "session_id": f"c{c:04d}-p{part - 1}-s0", "category": "shoes"}))
        for c in range(customers)]


def workload(settings: Settings, customers: int = 60, day0: int = 40,
             part: int = 0) -> list[tuple[str, bytes, bytes]]:
    """Three planted behaviours (big spenders, browsers, bargain hunters); ``part`` makes
    fresh event ids and later times with the same behaviour."""
    recs = []
    base = BASE_MS - DAY * day0 + part * 10 * DAY
    for c in range(customers):
        cid = f"c{c:04d}"
        g = group_of(cid)
        for i in range(5 + 10 * (g == 1)):
            recs.append((settings.topic_clickstream, cid.encode(), orjson.dumps({
                "event_id": f"{cid}-p{part}-c{i}", "customer_id": cid, "ts": base + i * 60_000,
                "type": "product_view", "session_id": f"{cid}-p{part}-s{i // 5}",
                "category": "shoes"})))
        for i in range(1 + 5 * (g == 0)):
            recs.append((settings.topic_transactions, cid.encode(), orjson.dumps({
                "event_id": f"{cid}-p{part}-o{i}", "customer_id": cid, "ts": base + i * HOUR,
                "amount": 300.0 if g == 0 else 20.0, "currency": "EUR", "items": 2,
                "categories": ["shoes"], "discount_amount": 15.0 if g == 2 else 0.0,
                "refund": False})))
    return recs


async def memberships(settings: Settings, customers: int = 60) -> dict[str, int]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        out = {}
        for c in range(customers):
            seg = await client.hget(f"{settings.key_prefix}:{{c{c:04d}}}:f", "seg")
            if seg is not None:
                out[f"c{c:04d}"] = int(seg)
        return out
    finally:
        await client.aclose()


def one_id_per_group(members: dict[str, int]) -> bool:
    by_group: dict[int, Counter[int]] = {}
    for cid, seg in members.items():
        by_group.setdefault(group_of(cid), Counter())[seg] += 1
    ids = [s for segs in by_group.values() for s in segs]
    ok = all(len(s) == 1 for s in by_group.values()) and len(set(ids)) == len(ids)
    if not ok:
        print("planted group -> segment ids:", by_group)
    return ok


async def test_catalog__lifecycle_names_profiles_and_reasons(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"catalog_refresh_s": 2.0, **STEADY})
    await ensure_topics(settings)
    await produce(settings, workload(settings))  # history first: warm-up sees whole customers
    w = WorkerProcess(settings, tmp_path).start()
    try:
        updates = await consume(settings, settings.topic_segment_updates, until=60, timeout=90)
        want = 2 * GROUPS  # born entries, then profiled ones from a refresh that sees members
        for _ in range(10):
            catalog = await consume(settings, settings.topic_segments, until=want, timeout=60,
                                    settle=1.0)
            if any(r["value"]["profile"] for r in catalog):
                break
            want = len(catalog) + 1  # a refresh before the first assignments profiles nobody
    finally:
        w.stop()
    entries = [CatalogEntry.model_validate(r["value"]) for r in catalog]
    born = [e for e in entries if e.status == "born" and e.model_version == 1]
    assert {e.segment_id for e in born} == {0, 1, 2}
    assert len({e.name for e in born}) == GROUPS  # unique names
    known = {e.segment_id for e in entries}
    for e in entries:  # later versions: every lifecycle event points at real segments
        assert set(e.related) <= known and (e.status in ("merged", "split")) == bool(e.related)
    assert all(r["key"] == str(r["value"]["segment_id"]).encode() for r in catalog)
    profiled = [e for e in entries if e.profile is not None]
    assert profiled, "the leader republishes the catalog with profiles"
    latest = {e.segment_id: e for e in entries}  # what compaction keeps
    live = [e for e in latest.values() if e.status not in ("merged", "retired")]
    assert sum(e.profile.size for e in live if e.profile) == 60
    assert len({e.name for e in live}) == len(live)
    final = {u["key"].decode(): u["value"] for u in updates}  # latest per customer
    spenders = {v["segment_id"] for cid, v in final.items() if group_of(cid) == 0}
    (spender_seg,) = spenders
    prof = next(e.profile for e in reversed(profiled) if e.segment_id == spender_seg and e.profile)
    assert prof.monetary_mean > 100  # they spend 6 x 300 a month; everyone else 20
    assert prof.zscores["monetary_30d"] > 0.5 and "monetary_30d" in prof.top_features[:3]
    recs = [SegmentUpdate.model_validate(u["value"]) for u in updates]
    assert all(r.reasons for r in recs)  # every first assignment says why
    purchase = {"purchase_frequency_30d", "monetary_30d", "avg_order_value"}
    for r in recs:
        if group_of(r.customer_id) != 0:
            continue
        assert (r.previous_segment_id is None) == all(x.previous_mean is None for x in r.reasons)
        bought = [x for x in r.reasons if x.feature in purchase]
        assert bought, r.reasons  # what sets big spenders apart is named
        assert all(x.value > 0 and x.new_mean > 0 for x in bought)


async def test_restart__same_customers_keep_their_ids_and_learning_continues_warm(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"worker_id": "w-restart", "catalog_refresh_s": 2.0,
                                           **STEADY})
    await ensure_topics(settings)
    part0, part1, part2 = workload(settings), workload(settings, part=1), touch(settings)
    await produce(settings, part0)
    w = WorkerProcess(settings, tmp_path, "first").start()
    try:
        await refreshed_on_whole_customers(settings, 60)
        await produce(settings, part1)  # more of the same behaviour: the model follows
        await wait_until(lambda: processed_count(settings) >= len(part0) + len(part1), 90, "part 1")
        await refreshed_on_whole_customers(settings, 60)  # settles
        await produce(settings, touch(settings, part=1))  # everyone re-evaluated with it
        await wait_until(lambda: processed_count(settings) >= len(part0) + len(part1) + 60, 60,
                         "the touch")
        await local_model_published(settings, since=time.time())
        before = await memberships(settings)
        version_before = orjson.loads(fetch(f"http://127.0.0.1:{settings.web_port}/readyz"))
    finally:
        w.stop()
    assert one_id_per_group(before)

    w2 = WorkerProcess(settings, tmp_path, "second").start()
    try:
        await wait_until(lambda: "restored this worker's clusterer" in w2.log(), 60,
                         "the second worker to restore its clusterer")
        await produce(settings, part2)  # the same customers again, new event ids
        await wait_until(lambda: processed_count(settings) >= len(part2), 90, "part 2")
        versions = [m["version"] for m in await read_topic(settings, settings.topic_model, 1)
                    if "version" in m]  # the global models, in publication order
        after = await memberships(settings)
        ready = orjson.loads(fetch(f"http://127.0.0.1:{settings.web_port}/readyz"))
    finally:
        w2.stop()
    assert after == before
    assert ready["model_version"] >= version_before["model_version"]
    assert "adopted global model" in w2.log()
    # warm: no second warm-up, so no brand-new model (v1) from the restarted worker
    assert versions.count(1) == 1 and versions == sorted(versions), versions


async def test_two_workers__share_one_model_and_give_same_behaviour_the_same_id(
    settings: Settings, tmp_path: Path
) -> None:
    # the live path on history (no steps): this is about merging two workers' clusterers,
    # which after a paced history wait for live events (docs/model.md, "Replays")
    settings = settings.model_copy(update={"topic_partitions": 4, "worker_id": "w-a",
                                           "catalog_refresh_s": 2.0, "history_step_hours": 0.0,
                                           **STEADY})
    other = settings.model_copy(update={"web_port": free_port(), "worker_id": "w-b"})
    await ensure_topics(settings)
    await produce(settings, workload(settings, customers=90))  # history, learnt by worker a
    a = WorkerProcess(settings, tmp_path, "a").start()
    b: WorkerProcess | None = None
    try:
        await refreshed_on_whole_customers(settings, 90)
        b = WorkerProcess(other, tmp_path, "b").start()
        await wait_until(lambda: _assigned(a) and _assigned(b), 90, "a rebalance")
        part1 = workload(settings, customers=90, part=1)
        await produce(settings, part1)  # both take a share and learn: merges of two workers
        n = len(part1) * 2
        await wait_until(lambda: processed_count(settings) + processed_count(other) >= n, 90,
                         "part 1 on both workers")
        await wait_until(lambda: "merging the models of 2 workers" in a.log() + b.log(), 30,  # type: ignore[union-attr]
                         "a merge of both workers' models")
        await refreshed_on_whole_customers(settings, 90)  # settles
        await produce(settings, touch(settings, customers=90))  # everyone assigned with it
        await wait_until(lambda: processed_count(settings) + processed_count(other) >= n + 90, 60,
                         "the touch on both workers")
        members = await memberships(settings, 90)
        done_a, done_b = processed_count(settings), processed_count(other)
        models = await consume(settings, settings.topic_model, until=3, timeout=30, settle=2.0)
    finally:
        a.stop()
        if b is not None:
            b.stop()
    assert done_b > 0 and done_a > len(part1), "both took a share"
    assert one_id_per_group(members)
    locals_ = {r["key"] for r in models if r["key"].startswith(b"local:")}
    assert locals_ == {b"local:w-a", b"local:w-b"}
    merged = [r["value"] for r in models if r["key"] == b"global"]
    assert merged and len(merged[-1]["ids"]) == GROUPS


def _assigned(w: WorkerProcess) -> bool:
    """The worker's latest assignment includes at least one input partition."""
    lines = re.findall(r"input partitions assigned: (.*)", w.log())
    return bool(lines) and lines[-1].strip() != "none"


async def refreshed_on_whole_customers(settings: Settings, customers: int) -> None:
    """Until every customer is a member and, after that, a catalog refresh re-fit on them.

    The leader's refresh re-fits the model on a sample of current customers,
    then republishes the catalog of the version in use with fresh profiles;
    merges publish a new version instead. The second such republication after
    all customers are members comes from a refresh that started after that.
    """
    await wait_until(lambda: _eq(n_members(settings, customers), customers), 90,
                     f"all {customers} customers to be members")
    since = now_iso()
    await wait_until(lambda: _refreshes_since(settings, since, 2), 60,
                     f"two catalog refreshes after all {customers} customers were members", interval=0.5)


async def _refreshes_since(settings: Settings, since: str, n: int) -> bool:
    """At least ``n`` profiled republications of an already published version after ``since``."""
    versions: dict[str, int] = {}  # publication (updated_ts) -> its model version, in order
    profiled: set[str] = set()
    for raw in await read_topic(settings, settings.topic_segments, 1):
        entry = CatalogEntry.model_validate(raw)
        versions.setdefault(entry.updated_ts, entry.model_version)
        if entry.profile is not None:
            profiled.add(entry.updated_ts)
    seen: set[int] = set()
    refreshes = 0
    for ts, version in versions.items():
        refreshes += ts > since and ts in profiled and version in seen
        seen.add(version)
    return refreshes >= n


async def local_model_published(settings: Settings, since: float) -> None:
    """Until this worker publishes its clusterer to the model topic after ``since`` (epoch s)."""
    async def published() -> bool:
        return any(m.get("worker") == settings.worker_id and m["ts"] > since
                   for m in await read_topic(settings, settings.topic_model, 1))

    await wait_until(published, 30, "the worker's local model on the model topic", interval=0.5)


async def n_members(settings: Settings, customers: int = 60) -> int:
    return len(await memberships(settings, customers))


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
