"""Faults under load, with real processes: every event counted once, every membership published.

Each test drives a deterministic stream (planted personas from
:func:`streamseg.generate.simulate`, keyed by customer) through a real
``streamseg worker`` subprocess, injects a fault mid-stream (``kill -9``, a
second worker joining and leaving, Valkey stopped, the broker cut off), waits
until the consumer group has committed every input offset, and then checks:

* every customer's feature state in Valkey equals the from-scratch reference
  (:func:`streamseg.features.reference.accumulate`) over the same events, so
  nothing was lost and nothing counted twice;
* every customer's current membership in Valkey is the last segment-updates
  record for that customer, and no record names a previous segment that was
  never published (see :func:`assert_memberships_published`).

Waits are conditions with generous timeouts; only the outages themselves are
held for a fixed time, because that is the fault being injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
import urllib.request
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamseg.engine import Engine, InMessage, OutRecord
from streamseg.events.decode import decode_message
from streamseg.events.models import Event
from streamseg.features.keys import Keys
from streamseg.features.reference import accumulate
from streamseg.features.registry import DAY_MS, HALFLIFE_DAYS
from streamseg.features.store import CustomerUpdate, FeatureStore, Membership, RedisFeatureStore
from streamseg.generate import assign_personas, simulate
from streamseg.metrics import Metrics
from streamseg.segmenting.base import Assignment, Vector
from streamseg.settings import Settings
from streamseg.topics import ensure_topics

from .conftest import WorkerProcess, produce

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
Record = tuple[str, bytes | None, bytes | None]
MEMBERSHIP_FIELDS = {"seg", "seg_dist", "seg_version"}


# --- the workload and its reference -------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Kafka records in produce order, and the events each customer's features must reflect."""

    records: list[Record]
    events: dict[str, list[Event]]

    def chunks(self, *fractions: float) -> list[list[Record]]:
        """The records cut at the given fractions (e.g. 0.4, 0.7 -> three chunks)."""
        cuts = [0, *(int(len(self.records) * f) for f in fractions), len(self.records)]
        return [self.records[a:b] for a, b in itertools.pairwise(cuts)]


def make_workload(settings: Settings, customers: int, seed: int, days: float = 20.0) -> Workload:
    """Simulated personas over ``days`` (inside the dedup horizon, so no event is late)."""
    assert days < settings.dedup_horizon_days
    records: list[Record] = []
    events: dict[str, list[Event]] = defaultdict(list)
    for g in simulate(assign_personas(customers, seed=seed), days=days, end_ms=NOW_MS, seed=seed):
        value = orjson.dumps(g.payload)
        records.append((settings.topic(g.topic_role), g.customer_id.encode(), value))
        kind = "click" if g.topic_role == "clickstream" else "transaction"
        out = decode_message(value, kind, max_bytes=settings.max_message_bytes, now_ms=NOW_MS)
        assert not out.rejects, out.rejects
        events[g.customer_id].extend(out.events)
    return Workload(records, dict(events))


async def assert_features_match_reference(settings: Settings, redis: aioredis.Redis,
                                          workload: Workload) -> None:
    """Valkey state of every customer == one clean pass over that customer's events."""
    keys = Keys(settings.key_prefix)
    pipe = redis.pipeline(transaction=False)
    for cid in workload.events:
        pipe.hgetall(keys.state(cid))
    states = await pipe.execute()
    mismatched = []
    for (cid, evs), raw in zip(workload.events.items(), states, strict=True):
        got = {k.decode(): float(v) for k, v in raw.items() if k.decode() not in MEMBERSHIP_FIELDS}
        want = accumulate(evs, horizon_ms=settings.dedup_horizon_days * DAY_MS,
                          halflife_ms=HALFLIFE_DAYS * DAY_MS)
        if not same_state(got, want):
            mismatched.append((cid, got.get("n_events"), want.get("n_events")))
    assert not mismatched, f"{len(mismatched)} customers differ (id, got n_events, want): {mismatched[:5]}"


def same_state(got: dict[str, float], want: dict[str, float]) -> bool:
    if set(got) != set(want):
        return False
    return all(math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-9) for k in want)


async def assert_memberships_published(settings: Settings, redis: aioredis.Redis,
                                       workload: Workload) -> None:
    """Every customer's membership in Valkey was published, and is its latest record.

    A restarted worker starts a fresh model, so its segment ids need not mean
    what the old model's did, and a clean pass would publish a different
    sequence of changes: comparing sequences would be wrong. What must hold
    across crashes and rebalances is that downstream never misses or
    contradicts Valkey: per customer, the last segment-updates record (records
    of one customer share a partition, so offsets order them) names the
    segment stored in Valkey, the first record is a first assignment, and every
    ``previous_segment_id`` is a segment an earlier record of that customer
    announced (memberships are written to Valkey only after they are published).
    """
    keys = Keys(settings.key_prefix)
    pipe = redis.pipeline(transaction=False)
    for cid in workload.events:
        pipe.hget(keys.state(cid), "seg")
    stored = dict(zip(workload.events, await pipe.execute(), strict=True))
    missing = [cid for cid, seg in stored.items() if seg is None]
    assert not missing, f"{len(missing)} customers have no membership in Valkey: {missing[:5]}"

    history: dict[str, list[dict]] = defaultdict(list)
    for rec in await read_topic(settings, settings.topic_segment_updates):
        history[rec["customer_id"]].append(rec)
    problems = []
    for cid, seg in stored.items():
        recs = history.get(cid, [])
        if not recs or recs[-1]["segment_id"] != int(float(seg)):
            problems.append((cid, "latest record != Valkey", seg, [r["segment_id"] for r in recs]))
            continue
        if recs[0]["previous_segment_id"] is not None:
            problems.append((cid, "first record is not a first assignment", recs[0]))
        for i, r in enumerate(recs[1:], 1):
            if r["previous_segment_id"] not in {p["segment_id"] for p in recs[:i]}:
                problems.append((cid, "previous segment never published", r))
    assert not problems, f"{len(problems)} membership problems: {problems[:5]}"


# --- broker and worker observation -----------------------------------------------------


async def read_topic(settings: Settings, topic: str) -> list[dict]:
    """Every record of ``topic`` written so far, ordered by (partition, offset).

    Tansu's ListOffsets may report an end a little behind the last record, so
    read until that end is passed and a further fetch brings nothing new.
    """
    tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_list,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out: dict[TopicPartition, list[dict]] = {tp: [] for tp in tps}
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in batch.items():
                out[tp].extend(orjson.loads(m.value) for m in msgs)
            if not batch and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                return [rec for tp in tps for rec in out[tp]]
    finally:
        await consumer.stop()


async def committed_total(settings: Settings) -> int:
    """Input offsets the worker group has committed, summed over partitions.

    Offsets of a fresh topic run 0, 1, 2, ... so once every input record is
    processed this equals the number of records produced. (Tansu's reported
    end offsets can lag the last record, so they are no drain signal.)
    """
    tps = [TopicPartition(t, p) for t in settings.input_topics for p in range(settings.topic_partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=tps)
    finally:
        await admin.close()
    return sum(max(0, m.offset) for m in committed.values() if m is not None)


async def wait_drained(settings: Settings, produced: int, workers: list[WorkerProcess],
                       timeout: float = 120) -> None:
    """Until the group has committed all ``produced`` input records (never more)."""
    async def drained() -> bool:
        for w in workers:
            assert w.proc.running, f"{w.proc.name} died:\n{w.log()[-3000:]}"
        done = await committed_total(settings)
        assert done <= produced, f"committed {done} offsets for {produced} records"
        return done == produced

    await wait_until(drained, timeout, f"the worker group to commit all {produced} input offsets")


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (matching ``labels``) on a worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def events_seen(port: int, outcome: str) -> float:
    try:
        return metric(port, "streamseg_events_total", outcome=outcome)
    except OSError:  # the worker's web server is not up (yet)
        return 0.0


async def wait_until(cond: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = cond()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def start_worker(settings: Settings, tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(settings, tmp_path, name).start()


@contextlib.contextmanager
def running(*workers: WorkerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for w in workers:
            w.stop()


# --- 5. crash ----------------------------------------------------------------------------


class WorkerKilled(Exception):
    """Stands for ``kill -9`` at one exact point of a batch."""


class ScriptedSegmenter:
    """A model that puts everyone in ``segment``: a restarted model may disagree with its predecessor."""

    ready = True
    version = 1

    def __init__(self, segment: int) -> None:
        self.segment = segment

    def learn(self, x: Vector) -> None:
        pass

    def assign_many(self, xs: Sequence[Vector]) -> list[Assignment]:
        return [Assignment(self.segment, 0.0) for _ in xs]

    def centers(self) -> dict[int, dict[str, float]]:
        return {0: {}, 1: {}}

    def snapshot(self) -> dict[str, Any]:
        return {}


class RecordingPublisher:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.records.extend(records)


class DiesBeforeMembershipWrite:
    """The real store, except that the worker dies once the batch's records are published."""

    def __init__(self, store: RedisFeatureStore) -> None:
        self.store = store

    async def apply(self, events: Sequence[Event]) -> dict[str, CustomerUpdate]:
        return await self.store.apply(events)

    async def write_memberships(self, changes: Sequence[Membership]) -> None:
        raise WorkerKilled


async def test_worker_killed_between_publish_and_membership_write__redelivery_republishes(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    out = RecordingPublisher()

    def engine(st: FeatureStore, segment: int) -> Engine:
        return Engine(settings, st, ScriptedSegmenter(segment), out, Metrics(CollectorRegistry()))

    def order(offset: int) -> list[InMessage]:
        value = orjson.dumps({"event_id": f"o{offset}", "customer_id": "c1", "currency": "EUR",
                              "ts": NOW_MS - 1000 + offset, "amount": 10.0})
        return [InMessage(settings.topic_transactions, 0, offset, b"c1", value)]

    try:
        await engine(store, 0).process(order(0))  # c1 -> segment 0, published and stored
        with pytest.raises(WorkerKilled):  # the model moved: c1 -> 1 is published, then kill -9
            await engine(DiesBeforeMembershipWrite(store), 1).process(order(1))
        # the restarted worker's fresh model puts c1 back in 0 as offset 1 is redelivered
        await engine(store, 0).process(order(1))
    finally:
        await store.close()
    updates = [orjson.loads(v) for topic, _, v in out.records if topic == settings.topic_segment_updates]
    assert [u["segment_id"] for u in updates][:2] == [0, 1]
    stored = await redis_client.hget(Keys(settings.key_prefix).state("c1"), "seg")
    assert updates[-1]["segment_id"] == int(float(stored)) == 0, "downstream would believe c1 is in 1"


async def test_worker_killed_mid_stream__restart_counts_every_event_once(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    await ensure_topics(settings)
    wl = make_workload(settings, customers=150, seed=11)
    before, during, after = wl.chunks(0.45, 0.7)
    first = start_worker(settings, tmp_path, "worker-1")
    with running(first):
        await produce(settings, before)
        await wait_until(lambda: events_seen(settings.web_port, "processed") >= len(before) // 3,
                         60, "the first worker to be busy")
        first.proc.kill()  # mid-batch, no shutdown, no final commit
        assert await committed_total(settings) < len(before), "the kill must leave work behind"
        await produce(settings, during)
    second = start_worker(settings, tmp_path, "worker-2")
    with running(second):
        await produce(settings, after)
        await wait_drained(settings, len(wl.records), [second])
        # the restart re-read what the killed worker had applied but not committed
        assert events_seen(settings.web_port, "duplicate") > 0
    await assert_features_match_reference(settings, redis_client, wl)
    await assert_memberships_published(settings, redis_client, wl)
