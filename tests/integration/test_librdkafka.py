"""librdkafka interop: confluent-kafka clients on both sides of a real worker on Apache Kafka.

* A librdkafka producer configured as docs/subscribers.md says
  (``partitioner=murmur2_random``) feeds the input topics; a librdkafka
  consumer written as the same page shows reads ``segment-updates.v1`` and the
  catalog, and every record is what the user guide's *Outputs* promise.
* ``murmur2_random`` puts every key on the partition aiokafka (and the Java
  client) choose, so a customer's clicks and orders stay co-partitioned;
  librdkafka's default (``consistent_random``: CRC32 of the key) does not.
* A producer that ignores the setting splits customers across the partitions
  of two workers; their features still equal one clean pass over their events.
"""

from __future__ import annotations

import ast
import asyncio
import re
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streamseg.devstack import DevStack, free_port
from streamseg.erasure import standalone_eraser
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.publish.records import CatalogEntry, SegmentUpdate
from streamseg.settings import Settings
from streamseg.topics import ensure_topics

from .conftest import WorkerProcess, unique_settings
from .streams import (
    Record,
    Workload,
    assert_features_match_reference,
    events_seen,
    input_assignment,
    make_workload,
    produce_tracked,
    read_topic,
    running,
    start_worker,
    wait_drained,
    wait_until,
)

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "subscribers.md"
#: the producer settings docs/subscribers.md gives for the input topics (besides bootstrap.servers)
PRODUCER = {"partitioner": "murmur2_random", "enable.idempotence": True, "acks": "all"}
#: the same producer left at librdkafka's default partitioner (consistent_random: CRC32 of the key)
IGNORES_IT = {key: value for key, value in PRODUCER.items() if key != "partitioner"}
#: the consumer settings docs/subscribers.md gives (besides bootstrap.servers and group.id)
CONSUMER = {"auto.offset.reset": "earliest", "enable.auto.offset.store": False}


@pytest.fixture
def settings(stack: DevStack) -> Settings:
    """This module's topics; the catalog is republished with profiles every 2 s, not 30."""
    return unique_settings(stack, catalog_refresh_s=2.0)


# --- librdkafka clients --------------------------------------------------------------------


def librdkafka_produce(settings: Settings, records: Sequence[Record], config: dict[str, object]) -> list[int]:
    """Send ``records`` with a confluent-kafka producer; the partition each one landed on."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, **config})
    landed: list[int] = [-1] * len(records)
    failed: list[KafkaError] = []

    def delivered(i: int) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            partition = msg.partition()
            if err is not None or partition is None:
                failed.append(err or KafkaError(KafkaError.UNKNOWN))
            else:
                landed[i] = partition
        return report

    for i, (topic, key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered(i))
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "records still undelivered after 60 s"
    assert not failed, failed[:3]
    return landed


class LibrdkafkaSubscriber:
    """The confluent-kafka subscriber of docs/subscribers.md, keeping what it handled."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings = settings
        self.group_id = group_id
        self.consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                  "group.id": group_id, **CONSUMER})
        self.consumer.subscribe([settings.topic_segment_updates, settings.topic_segments])
        self.updates: dict[str, list[SegmentUpdate]] = defaultdict(list)  # per customer, in order
        self.keys: dict[str, bytes] = {}  # customer -> key of its records
        self.erased: list[str] = []
        self.catalog: dict[int, CatalogEntry] = {}  # latest entry per segment
        self.catalog_keys: list[tuple[bytes, int]] = []  # (key, segment_id) of every entry
        self.handled: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset handled

    def handle(self, msg: Message) -> None:
        """The body of the page's poll loop."""
        raw_key, value = msg.key() or b"", msg.value()
        key = raw_key.decode()
        if value is None:  # tombstone: an erased customer
            self.erased.append(key)
        elif msg.topic() == self.settings.topic_segments:
            entry = CatalogEntry.model_validate_json(value)
            self.catalog[entry.segment_id] = entry
            self.catalog_keys.append((raw_key, entry.segment_id))
        else:
            update = SegmentUpdate.model_validate_json(value)
            self.updates[update.customer_id].append(update)
            self.keys[update.customer_id] = raw_key

    def poll(self, seconds: float) -> None:
        """Run the page's loop for ``seconds``."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            self.handle(msg)
            self.consumer.store_offsets(msg)
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            self.handled[topic, partition] = offset

    def latest(self) -> dict[str, SegmentUpdate]:
        return {cid: recs[-1] for cid, recs in self.updates.items() if recs}

    def close(self) -> None:
        self.consumer.close()

    def committed(self) -> dict[tuple[str, int], int]:
        """The group's committed offsets of the partitions this subscriber handled records of."""
        probe = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap, "group.id": self.group_id})
        try:
            tps = probe.committed([TopicPartition(t, p) for t, p in self.handled], timeout=30)
        finally:
            probe.close()
        return {(tp.topic, tp.partition): tp.offset for tp in tps}


def profiled(entry: CatalogEntry) -> bool:
    """The entry has a profile of the segment's members: every feature's mean, the top ones."""
    prof = entry.profile
    return (prof is not None and prof.size > 0 and bool(prof.means) and set(prof.means) == set(prof.zscores)
            and set(prof.top_features) <= set(prof.means))


def described(entry: CatalogEntry) -> bool:
    """What the catalog must say of a segment customers are stored in: a live one has a
    profile of its members; one merged or retired by a re-fit says so, and a merged one
    names where it went (its members move at their next evaluation: docs/user-guide.md)."""
    if entry.status == "merged":
        return bool(entry.related) and entry.profile is None
    if entry.status == "retired":
        return entry.profile is None
    return profiled(entry)


async def memberships(settings: Settings, redis: aioredis.Redis, customers: list[str]) -> dict[str, int | None]:
    keys = Keys(settings.key_prefix)
    pipe = redis.pipeline(transaction=False)
    for cid in customers:
        pipe.hget(keys.state(cid), "seg")
    stored = await pipe.execute()
    return {cid: None if seg is None else int(float(seg)) for cid, seg in zip(customers, stored, strict=True)}


# --- the round trip ------------------------------------------------------------------------


async def test_librdkafka_producer_in_and_consumer_out__records_are_the_documented_outputs(
    settings: Settings, worker: WorkerProcess, redis_client: aioredis.Redis
) -> None:
    wl = make_workload(settings, customers=60, seed=31)
    landed = await asyncio.to_thread(librdkafka_produce, settings, wl.records, PRODUCER)
    where: dict[str, set[int]] = defaultdict(set)
    for (_, key, _), partition in zip(wl.records, landed, strict=True):
        where[key.decode()].add(partition)  # type: ignore[union-attr]
    assert all(len(p) == 1 for p in where.values()), "murmur2_random split a customer"
    await wait_drained(settings, len(wl.records), [worker])
    await assert_features_match_reference(settings, redis_client, wl)

    customers = sorted(wl.events)
    sub = LibrdkafkaSubscriber(settings, f"offers-{uuid.uuid4().hex[:8]}")
    try:
        missing: dict[str, object] = {}

        async def agrees_with_valkey() -> bool:
            """Every customer's latest record names the segment stored for it, and the
            catalog describes each such segment by a profile of its members."""
            await asyncio.to_thread(sub.poll, 0.5)
            latest = sub.latest()
            stored = await memberships(settings, redis_client, customers)
            missing["records"] = {cid: (latest[cid].segment_id if cid in latest else None, seg)
                                  for cid, seg in stored.items()
                                  if cid not in latest or latest[cid].segment_id != seg}
            missing["profiles"] = sorted(sid for sid in set(stored.values())  # type: ignore[type-var]
                                         if sid not in sub.catalog
                                         or not described(sub.catalog[sid]))
            return not missing["records"] and not missing["profiles"]

        await wait_until(agrees_with_valkey, 120, lambda: (
            "the librdkafka subscriber to read every customer's current segment and a catalog "
            f"entry that describes it; still missing (read, stored): {missing}"))
        assert set(sub.updates) == set(customers)
        for cid, recs in sub.updates.items():
            assert sub.keys[cid] == cid.encode()  # key = customer_id
            assert recs[0].previous_segment_id is None, recs[0]  # a first assignment comes first
            for rec in recs:
                assert rec.segment_id >= 0 and rec.segment_name and rec.model_version >= 1
                assert rec.distance >= 0 and len(rec.reasons) <= 3
                assert rec.event_ts.endswith("Z") and rec.processed_ts.endswith("Z")
        assert all(key == str(sid).encode() for key, sid in sub.catalog_keys)  # key = segment id
        for sid, entry in sub.catalog.items():
            if entry.profile is not None:  # a segment without members has size 0 and no means
                assert entry.profile.segment_id == sid and entry.profile.name == entry.name
                assert 0 <= entry.profile.share <= 1 and (entry.profile.size == 0 or profiled(entry))

        erased = customers[0]  # `streamseg forget`: the subscriber sees a tombstone
        async with standalone_eraser(settings) as eraser:
            await eraser.forget(erased, actor="test", via="cli")

        async def tombstone_read() -> bool:
            await asyncio.to_thread(sub.poll, 0.5)
            return erased in sub.erased

        await wait_until(tombstone_read, 60, "the tombstone of the erased customer")
    finally:
        await asyncio.to_thread(sub.close)
    # close() committed every handled record: the group resumes after the last one
    assert await asyncio.to_thread(sub.committed) == {tp: o + 1 for tp, o in sub.handled.items()}


# --- which partition a key lands on --------------------------------------------------------


async def test_murmur2_random_puts_every_key_where_aiokafka_does__librdkafka_default_does_not(
    stack: DevStack,
) -> None:
    """Clicks from librdkafka, orders from aiokafka (murmur2, as Java): same partition per key
    with ``partitioner=murmur2_random``; with librdkafka's default (CRC32) most keys move."""
    settings = unique_settings(stack, topic_partitions=6)
    await ensure_topics(settings)
    keys = [f"c{i:06d}".encode() for i in range(300)]
    value = b"{}"  # no worker reads these topics: only the placement matters
    orders = await produce_tracked(settings, [(settings.topic_transactions, k, value) for k in keys])
    java = [tp.partition for tp, _ in orders]
    clicks = [(settings.topic_clickstream, k, value) for k in keys]
    murmur2 = await asyncio.to_thread(librdkafka_produce, settings, clicks, PRODUCER)
    default = await asyncio.to_thread(librdkafka_produce, settings, clicks, IGNORES_IT)

    assert murmur2 == java  # co-partitioned: every customer's clicks and orders share a partition
    assert default == [zlib.crc32(k) % settings.topic_partitions for k in keys]  # CRC32
    moved = sum(d != j for d, j in zip(default, java, strict=True))
    assert moved > len(keys) // 2, f"only {moved} of {len(keys)} keys left their murmur2 partition"


# --- a producer that ignores it -----------------------------------------------------------------


def owners(settings: Settings, workers: list[WorkerProcess]) -> dict[int, WorkerProcess] | None:
    """Partition number -> the worker that owns it on both input topics, once every worker
    owns some (Faust assigns the same partition of co-partitioned topics to one worker)."""
    out: dict[int, WorkerProcess] = {}
    for w in workers:
        tps = input_assignment(w)
        if not tps:
            return None
        for p in {p for _, p in tps}:
            if {(t, p) for t in settings.input_topics} - tps or p in out:
                return None
            out[p] = w
    return out if len(out) == settings.topic_partitions else None


def split_customers(wl: Workload, clicks: Sequence[Record], click_parts: list[int],
                    orders: Sequence[Record], order_parts: list[int]) -> dict[str, tuple[int, int]]:
    """Customers whose clicks and orders landed on different partitions: (click, order) partition."""
    where: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for kind, recs, parts in (("click", clicks, click_parts), ("order", orders, order_parts)):
        for (_, key, _), p in zip(recs, parts, strict=True):
            where[key.decode()][kind].add(p)  # type: ignore[union-attr]
    assert set(where) == set(wl.events)
    out = {}
    for cid, kinds in where.items():
        assert all(len(ps) == 1 for ps in kinds.values()), "a partitioner split one topic's key"
        if len(kinds) == 2 and kinds["click"] != kinds["order"]:
            out[cid] = (next(iter(kinds["click"])), next(iter(kinds["order"])))
    return out


async def test_producer_ignoring_murmur2__splits_customers_across_two_workers_and_features_stay_correct(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    await ensure_topics(settings)
    wl = make_workload(settings, customers=150, seed=32)
    other = settings.model_copy(update={"web_port": free_port()})  # same group, own web port
    workers = [start_worker(settings, tmp_path, "worker-1"), start_worker(other, tmp_path, "worker-2")]
    with running(*workers):
        await wait_until(lambda: owners(settings, workers) is not None, 120,
                         "the two workers to share the input partitions")
        owner = owners(settings, workers)
        assert owner is not None
        # orders from a producer that follows the page (as aiokafka and Java do by default),
        # clicks from one left at librdkafka's default partitioner
        clicks = [r for r in wl.records if r[0] == settings.topic_clickstream]
        orders = [r for r in wl.records if r[0] == settings.topic_transactions]
        click_parts, order_parts = await asyncio.gather(
            asyncio.to_thread(librdkafka_produce, settings, clicks, IGNORES_IT),
            asyncio.to_thread(librdkafka_produce, settings, orders, PRODUCER))
        await wait_drained(settings, len(wl.records), workers)
        assert owners(settings, workers) == owner, "partitions moved meanwhile: no split shown"
        for w, port in zip(workers, [settings.web_port, other.web_port], strict=True):
            assert events_seen(port, "processed") > 0, f"{w.proc.name} processed nothing"

    split = split_customers(wl, clicks, click_parts, orders, order_parts)
    assert len(split) >= 10, f"only {len(split)} customers split: the test would show nothing"
    assert all(owner[c] is not owner[o] for c, o in split.values())  # two workers each
    await assert_features_match_reference(settings, redis_client, wl)
    # every customer has a segment, and what Valkey holds was published
    stored = await memberships(settings, redis_client, sorted(wl.events))
    records = await read_topic(settings, settings.topic_segment_updates)
    published = {(r["customer_id"], r["segment_id"]) for r in records}
    unpublished = [(cid, seg) for cid, seg in stored.items() if (cid, seg) not in published]
    assert not unpublished, f"{len(unpublished)} memberships never published: {unpublished[:5]}"
    # two workers evaluating one customer at once: sizes still count it once, and its last
    # record (the one a compacted topic keeps) says what Redis holds
    last = {r["customer_id"]: r["segment_id"] for r in records}
    assert {c: last[c] for c in stored} == stored
    sizes = await RedisFeatureStore(redis_client, Keys(settings.key_prefix),
                                    dedup_horizon_days=settings.dedup_horizon_days,
                                    retention_days=settings.retention_days).segment_sizes()
    assert sum(sizes.values()) == len(stored) == len(wl.events), sizes


# --- the page ---------------------------------------------------------------------------------


def doc_config(call: str) -> dict[str, object]:
    """The settings passed to ``Producer({...})`` / ``Consumer({...})`` in the page's Python
    snippets, without ``bootstrap.servers`` and ``group.id`` (the tests use their own)."""
    found = []
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S):
        tree = compile(block, DOC.name, "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == call
                    and node.args and isinstance(node.args[0], ast.Dict)):
                found.append(ast.literal_eval(node.args[0]))
    assert len(found) == 1, f"{DOC.name} has {len(found)} {call}({{...}}) snippets"
    return {k: v for k, v in found[0].items() if k not in ("bootstrap.servers", "group.id")}


def test_subscriber_docs__give_the_producer_and_consumer_settings_these_tests_run() -> None:
    assert doc_config("Producer") == PRODUCER
    assert doc_config("Consumer") == CONSUMER
