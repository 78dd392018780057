"""No poison pills: oversized and binary input, and outputs the broker refuses, never stop a worker.

A value of 800 KB, 5 MB or 20 MB among normal events must become one dead
letter of bounded size (reason, source, size, SHA-256, a prefix of the bytes),
while the normal events around it are applied exactly once and the worker goes
on. A record the broker refuses for good (a topic whose ``max.message.bytes``
is below ours) must not loop the worker either: its events stay applied once,
the lost output is counted.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from streamseg.devstack import DevStack
from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.metrics import Metrics
from streamseg.publish.records import dead_letter_bound
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.fuzzing import MAX_BYTES, NOW_MS, fuzz_inputs, positions
from tests.support import Recorder

from .conftest import unique_settings
from .engine_support import store_for
from .streams import (
    Record,
    assert_features_match_reference,
    events_seen,
    make_workload,
    metric,
    produce_tracked,
    read_topic,
    running,
    start_worker,
    wait_drained,
)

pytestmark = pytest.mark.integration

MB = 1_000_000
#: what the test producer may send: the 20 MB value and then some
MAX_REQUEST = 32 << 20


def big_value(size: int, binary: bool) -> bytes:
    """``size`` bytes: random binary, or an event whose padding makes it that large."""
    if binary:
        return random.Random(size).randbytes(size)
    head = b'{"event_id":"big","customer_id":"c-big","ts":1767225600000,"type":"login","pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


BIG = {"800KB": big_value(800_000, binary=False), "5MB": big_value(5 * MB, binary=True),
       "20MB": big_value(20 * MB, binary=False)}


@pytest.mark.tansu
async def test_800kb_5mb_20mb_values__are_bounded_dead_letters_and_the_stream_goes_on(
    stack: DevStack, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    # a fetch size the 20 MB record fits in, so it really reaches the worker whole
    settings = unique_settings(stack, fetch_partition_bytes=MAX_REQUEST)
    await ensure_topics(settings)
    wl = make_workload(settings, customers=30, seed=21)
    records: list[Record] = list(wl.records)
    for i, value in enumerate(BIG.values()):  # spread among the normal events
        at = (i + 1) * len(records) // (len(BIG) + 1)
        records.insert(at, (settings.topic_clickstream, b"c-big", value))
    worker = start_worker(settings, tmp_path, "worker")
    with running(worker):
        await produce_tracked(settings, records, max_request_size=MAX_REQUEST)
        await wait_drained(settings, len(records), [worker])  # asserts it kept running
        assert events_seen(settings.web_port, "processed") == sum(map(len, wl.events.values()))
    await assert_features_match_reference(settings, redis_client, wl)  # each applied once

    dead = await read_topic(settings, settings.topic_dlq)
    assert sorted(d["original_size"] for d in dead) == sorted(map(len, BIG.values())), dead
    for d in dead:
        value = next(v for v in BIG.values() if len(v) == d["original_size"])
        assert d["reason"] == "too_large" and d["source_topic"] == settings.topic_clickstream
        assert d["original_sha256"] == hashlib.sha256(value).hexdigest()
        assert d["original_truncated"] and d["source_key"] == "c-big"
        assert bytes_of(d["original_b64"]) == value[:settings.dlq_prefix_bytes]
        assert len(orjson.dumps(d)) <= dead_letter_bound(settings.dlq_prefix_bytes)


def bytes_of(b64: str) -> bytes:
    import base64

    return base64.b64decode(b64)


async def test_tight_limits__refused_updates_counted_lost_and_unfetchable_record_dead_lettered(
    stack: DevStack, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """A broker limit below our records (MessageSizeTooLarge, not retriable) must not loop the
    worker, nor dead-letter events that were applied; and an 800 KB record over the worker's
    smallest fetch size must not stall or stop it: read whole (first data of a fetch) or
    skipped by the client, it is one too_large dead letter at its offset. (Apache Kafka
    only: the broker's limit is the fault shown.)"""
    settings = unique_settings(stack, fetch_partition_bytes=64 * 1024)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    await admin.start()
    try:  # before ensure_topics, which then leaves it as it is
        await admin.create_topics([NewTopic(settings.topic_segment_updates, 2, 1,
                                            topic_configs={"max.message.bytes": "100"})])
    finally:
        await admin.close()
    await ensure_topics(settings)
    wl = make_workload(settings, customers=30, seed=22)
    half = len(wl.records) // 2
    records: list[Record] = [*wl.records[:half], (settings.topic_clickstream, b"x", BIG["800KB"]),
                             *wl.records[half:], (settings.topic_clickstream, b"x", b'{"event_id": ')]
    worker = start_worker(settings, tmp_path, "worker")
    with running(worker):
        where = await produce_tracked(settings, records, max_request_size=MAX_REQUEST)
        await wait_drained(settings, len(records), [worker])
        port = settings.web_port
        assert metric(port, "streamseg_outputs_lost_total", topic=settings.topic_segment_updates) > 0
        assert events_seen(port, "processed") == sum(map(len, wl.events.values()))
    await assert_features_match_reference(settings, redis_client, wl)
    dead = sorted(await read_topic(settings, settings.topic_dlq), key=lambda d: d["reason"])
    assert [d["reason"] for d in dead] == ["malformed_json", "too_large"], "applied events were dead-lettered"
    big = dead[1]
    tp, offset = where[half]
    assert (big["source_partition"], big["source_offset"]) == (tp.partition, offset)
    assert big["original_size"] in (None, 800_000)  # None: the client could not read it
    print("800 KB record over a 64 KiB fetch size:",
          "skipped by the client" if big["original_size"] is None else "read whole")




FUZZ_INPUTS = 20_000


async def test_hostile_large_and_binary_messages_through_the_engine_and_valkey__each_applied_or_dead_lettered(
    settings: Settings,
) -> None:
    """The decode fuzz (tests/unit/test_fuzz.py, 100k inputs) taken on through the store: every
    element of every message is applied, a duplicate or a dead letter, none of them a
    processing_error, and no dead letter is larger than the bound."""
    settings = settings.replace(max_message_bytes=MAX_BYTES)
    topic = {"click": settings.topic_clickstream, "transaction": settings.topic_transactions}
    store = store_for(settings)
    engine = Engine(settings, store, build_segmenter(settings), Recorder(),
                    Metrics(CollectorRegistry()), wall_ms=lambda: float(NOW_MS), standalone=False)
    bound = dead_letter_bound(settings.dlq_prefix_bytes)
    outcomes = units = 0
    inputs = list(fuzz_inputs(seed=17, n=FUZZ_INPUTS))
    try:
        for start in range(0, FUZZ_INPUTS, 500):
            batch = [InMessage(topic[inp.kind], 0, start + i, (None, b"c1", b"\xff")[i % 3], inp.raw)
                     for i, inp in enumerate(inputs[start:start + 500])]
            out = engine.publisher = Recorder()
            report = await engine.process(batch)
            outcomes += report.processed + report.duplicates + report.dead_letters
            units += sum(len(positions(m.value)) for m in batch)
            dead = [v for t, _, v in out.records if t == settings.topic_dlq]
            assert len(dead) == report.dead_letters and max(map(len, dead), default=0) <= bound
            assert not any(b'"processing_error"' in v for v in dead)
    finally:
        await store.close()
    assert outcomes == units
    assert engine.metrics.registry.get_sample_value(
        "streamseg_events_total", {"topic": settings.topic_clickstream, "outcome": "processed"}) > 1000
