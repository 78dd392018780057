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
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from streamseg.devstack import free_port
from streamseg.engine import BatchReport, Engine, InMessage, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.registry import MODEL_FEATURES
from streamseg.features.store import Membership, MembershipWrite, RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.segmenting.model import SegmentModel
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.fuzzing import REASONS, fuzz_inputs, positions
from tests.support import Recorder

from .conftest import WorkerProcess, produce
from .engine_support import store_for
from .faults import PrivateValkey, pause, private_broker
from .streams import (
    NOW_MS,
    Record,
    assert_committed_events_applied,
    assert_features_match_reference,
    assert_memberships_published,
    committed_offsets,
    committed_total,
    events_seen,
    input_assignment,
    make_workload,
    metric,
    model_ready,
    produce_tracked,
    read_topic,
    running,
    start_worker,
    wait_drained,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # these tests count events and memberships, never customer value: a value fit (pymc, in the
    # worker's sample process) never finished within one of them and only took CPU from the worker
    return settings.replace(value_fit=False)


# --- crash -------------------------------------------------------------------------------


class WorkerKilled(BaseException):
    """Stands for ``kill -9`` at one exact point of a batch (no handler in the worker sees it)."""


def pinned_model(segment: int, version: int) -> SegmentModel:
    """A global model that puts every plausible customer in ``segment`` (0 or 1).

    A restarted or newer model may place a customer differently from the one
    before it; pinning makes the test say which.
    """
    d = len(MODEL_FEATURES)
    near, far = np.zeros(d), np.full(d, 300.0)  # far from any real customer, still finite
    centers = np.array([near, far] if segment == 0 else [far, near])
    return SegmentModel(version, list(MODEL_FEATURES), np.zeros(d), np.ones(d), [0, 1], centers,
                        np.ones(2), next_id=2)


class DiesBeforeMembershipWrite(RedisFeatureStore):
    """The real store, except that the worker dies once the batch's records are published."""

    async def write_memberships(self, changes: Sequence[Membership]) -> MembershipWrite:
        raise WorkerKilled


def order_message(settings: Settings, offset: int, customer: str) -> InMessage:
    value = orjson.dumps({"event_id": f"o{offset}", "customer_id": customer, "currency": "EUR",
                          "ts": NOW_MS - 1000 + offset, "amount": 10.0})
    return InMessage(settings.topic_transactions, 0, offset, customer.encode(), value)


def engine_with(settings: Settings, store: RedisFeatureStore, out: Recorder,
                model: SegmentModel | None) -> Engine:
    """An engine as a worker runs it, assigning with ``model`` (None: no model yet)."""
    engine = Engine(settings, store, build_segmenter(settings), out, Metrics(CollectorRegistry()),
                    standalone=False)
    if model is not None:
        engine.assigner.adopt(model)
    return engine


async def test_worker_killed_between_publish_and_membership_write__redelivery_republishes(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    store, dying = store_for(settings), store_for(settings, DiesBeforeMembershipWrite)
    out = Recorder()

    def order(offset: int) -> list[InMessage]:
        return [order_message(settings, offset, "c1")]

    try:
        # c1 -> segment 0, published and stored
        await engine_with(settings, store, out, pinned_model(0, version=1)).process(order(0))
        with pytest.raises(WorkerKilled):  # a newer model: c1 -> 1 is published, then kill -9
            await engine_with(settings, dying, out, pinned_model(1, version=2)).process(order(1))
        # the restarted worker, with a model that puts c1 back in 0, gets offset 1 again
        restarted = engine_with(settings, store, out, pinned_model(0, version=3))
        await restarted.process(order(1))
    finally:
        await store.close()
        await dying.close()
    updates = [orjson.loads(v) for topic, _, v in out.records if topic == settings.topic_segment_updates]
    assert [u["segment_id"] for u in updates][:2] == [0, 1]
    stored = await redis_client.hget(Keys(settings.key_prefix).state("c1"), "seg")
    assert updates[-1]["segment_id"] == int(float(stored)) == 0, "downstream would believe c1 is in 1"
    assert updates[-1]["previous_segment_id"] == 0  # a republish, which is not a change:
    assert restarted.metrics.registry.get_sample_value(
        "streamseg_membership_changes_total", {"from_segment": "0", "to_segment": "0"}) is None


async def test_worker_killed_mid_stream__restart_counts_every_event_once(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    await ensure_topics(settings)
    wl = make_workload(settings, customers=150, seed=11)
    before, during, after = wl.chunks(0.45, 0.7)
    first = start_worker(settings, tmp_path, "worker-1")
    with running(first):
        await produce(settings, before)
        await wait_until(lambda: events_seen(settings.web_port, "processed") >= 200 and
                         model_ready(settings.web_port), 60, "the first worker to be ready")
        busy_from = events_seen(settings.web_port, "processed")
        sending = asyncio.create_task(produce(settings, during))  # kill while this streams in
        await wait_until(lambda: events_seen(settings.web_port, "processed") >= busy_from + 50,
                         60, "the first worker to be busy with the next chunk")
        applied = events_seen(settings.web_port, "processed")  # a lower bound at the kill
        first.proc.kill()  # mid-batch, no shutdown, no final commit
        await sending
        committed = await committed_total(settings)
        assert committed < len(before) + len(during), "the kill must leave work behind"
    second = start_worker(settings, tmp_path, "worker-2")
    with running(second):
        await produce(settings, after)
        await wait_drained(settings, len(wl.records), [second])
        # what the killed worker applied but had not committed came again, and counted once
        assert events_seen(settings.web_port, "duplicate") >= applied - committed
    await assert_features_match_reference(settings, redis_client, wl)
    await assert_memberships_published(settings, redis_client, wl)


async def test_customers_held_before_any_model__are_assigned_by_another_worker(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A worker acks the events of customers it holds back for want of a model; if it stops
    before the model arrives, another worker must still give them a segment."""
    store = store_for(settings)
    try:
        early = engine_with(settings, store, Recorder(), None)  # no model yet
        await early.process([order_message(settings, i, f"h{i}") for i in range(5)])
        assert len(early.held) == 5 and not await redis_client.hget(Keys(settings.key_prefix).state("h0"), "seg")
        # the early worker goes away (its memory with it); another one has a model
        out = Recorder()
        other = engine_with(settings, store, out, pinned_model(1, version=3))
        assert await other.flush_pending() == 5
        assert await other.flush_pending() == 0  # released: nothing assigned twice
    finally:
        await store.close()
    keys = Keys(settings.key_prefix)
    for i in range(5):
        assert await redis_client.hget(keys.state(f"h{i}"), "seg") == b"1"
    published = {orjson.loads(v)["customer_id"] for t, _, v in out.records
                 if t == settings.topic_segment_updates}
    assert published == {f"h{i}" for i in range(5)}
    assert not await redis_client.smembers(keys.held())


async def test_held_customers_assigned_by_two_workers__counted_once_and_last_record_is_redis(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Worker A holds customers back (no model yet) while worker B, with a model, assigns them
    from the shared held set; then A gets its model and assigns them again from memory."""
    store = store_for(settings)
    try:
        early = engine_with(settings, store, Recorder(), None)
        await early.process([order_message(settings, i, f"h{i}") for i in range(5)])
        other = engine_with(settings, store, Recorder(), pinned_model(0, version=3))
        assert await other.flush_pending() == 5
        out = Recorder()
        early.publisher = out
        early.assigner.adopt(pinned_model(1, version=4))
        await early.flush_pending()
        sizes = await store.segment_sizes()
    finally:
        await store.close()
    assert sizes == {0: 0, 1: 5}  # five customers, each counted once
    keys = Keys(settings.key_prefix)
    last: dict[str, dict] = {}
    for t, _, v in out.records:
        if t == settings.topic_segment_updates:
            last[orjson.loads(v)["customer_id"]] = orjson.loads(v)
    for i in range(5):
        assert await redis_client.hget(keys.state(f"h{i}"), "seg") == b"1"
        assert (last[f"h{i}"]["segment_id"], last[f"h{i}"]["previous_segment_id"]) == (1, 0)


async def two_orders_and_bad_json(settings: Settings) -> tuple[BatchReport, Engine, Recorder]:
    """One batch through an engine with a model: orders of c1 and c2 (offsets 0, 1), then
    malformed JSON (offset 2)."""
    store = store_for(settings)
    out = Recorder()
    engine = engine_with(settings, store, out, pinned_model(0, version=1))
    bad_json = InMessage(settings.topic_transactions, 0, 2, b"c3", b'{"event_id": ')
    try:
        report = await engine.process([order_message(settings, 0, "c1"),
                                       order_message(settings, 1, "c2"), bad_json])
    finally:
        await store.close()
    return report, engine, out


async def test_batch_redis_refuses_for_good__goes_to_the_dlq_whole_instead_of_raising(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    # Raising would reach Faust, which acknowledges the batch anyway: it would be lost.
    await redis_client.set(Keys(settings.key_prefix).state("c1"), "not a hash")  # WRONGTYPE
    report, engine, out = await two_orders_and_bad_json(settings)
    dead = [orjson.loads(v) for topic, _, v in out.records if topic == settings.topic_dlq]
    assert sorted((d["source_offset"], d["reason"]) for d in dead) == [
        (0, "processing_error"), (1, "processing_error"), (2, "malformed_json")]
    assert "WRONGTYPE" in dead[-1]["detail"] and report.dead_letters == 3
    assert engine.metrics.registry.get_sample_value(
        "streamseg_dead_letters_total", {"reason": "processing_error"}) == 2


async def test_batch_applied_then_membership_write_refused__events_are_not_also_dead_lettered(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """An event is applied once or dead-lettered, never both: the store took the events, so a
    later failure must not send them to the DLQ as processing_error (nor stop the worker)."""
    keys = Keys(settings.key_prefix)
    await redis_client.set(keys.segment_sizes(), "not a hash")  # WRONGTYPE for memberships only
    report, engine, out = await two_orders_and_bad_json(settings)
    dead = [orjson.loads(v) for topic, _, v in out.records if topic == settings.topic_dlq]
    assert [(d["source_offset"], d["reason"]) for d in dead] == [(2, "malformed_json")]
    assert report.processed == 2 and report.dead_letters == 1
    assert out.updates(settings) == 2  # published before the failed write, as always
    assert engine.metrics.registry.get_sample_value(
        "streamseg_dead_letters_total", {"reason": "processing_error"}) is None
    for cid in ("c1", "c2"):
        assert await redis_client.hget(keys.state(cid), "n_events") == b"1"


# --- rebalance ---------------------------------------------------------------------------


async def test_second_worker_joining_and_leaving_mid_stream__counts_every_event_once(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    await ensure_topics(settings)
    wl = make_workload(settings, customers=150, seed=12)
    alone, shared, after = wl.chunks(0.3, 0.75)
    other = settings.model_copy(update={"web_port": free_port()})  # same group, own web port
    first = start_worker(settings, tmp_path, "worker-1")
    with running(first):
        await produce(settings, alone)
        second = start_worker(other, tmp_path, "worker-2")
        with running(second):
            # shared only once it owns partitions: on Apache Kafka the first worker could
            # otherwise finish the whole chunk before the rebalance hands anything over
            await wait_until(lambda: input_assignment(second) is not None, 90,
                             "the second worker to be given input partitions")
            await produce(settings, shared)
            await wait_until(lambda: events_seen(other.web_port, "processed") > 0 and
                             model_ready(other.web_port), 90,
                             "the second worker to be given partitions and assign segments")
        # the second worker has left the group (SIGTERM) while the stream goes on
        await produce(settings, after)
        await wait_drained(settings, len(wl.records), [first])
        assert events_seen(settings.web_port, "processed") < len(wl.records), "work was shared"
    await assert_features_match_reference(settings, redis_client, wl)
    await assert_memberships_published(settings, redis_client, wl)


# --- outages -------------------------------------------------------------------------------

OUTAGE_S = 10.0


async def test_valkey_stopped_10s_then_full__worker_retries_acks_nothing_unapplied_and_recovers(
    settings: Settings, tmp_path: Path
) -> None:
    valkey = PrivateValkey(tmp_path).start()
    s = settings.model_copy(update={"redis_url": valkey.url})
    await ensure_topics(s)
    wl = make_workload(s, customers=100, seed=13)
    before, during, after = wl.chunks(0.4, 0.7)
    worker = start_worker(s, tmp_path, "worker")
    redis = aioredis.Redis.from_url(valkey.url)
    try:
        where = await produce_tracked(s, before)
        await wait_until(lambda: events_seen(s.web_port, "processed") >= len(before) // 3, 60,
                         "the worker to be busy")
        valkey.stop()
        down_at = time.monotonic()
        where += await produce_tracked(s, during)
        await wait_until(lambda: metric(s.web_port, "streamseg_store_retries_total") > 0, 30,
                         "the worker to retry against the stopped Valkey")
        await asyncio.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))  # the outage itself
        # Freeze the worker, bring Valkey back (its AOF holds exactly what was applied before
        # the outage) and compare with what the group committed while Valkey was gone.
        pause(worker, signal.SIGSTOP)
        try:
            committed = await committed_offsets(s)
            valkey.start()
            await assert_committed_events_applied(s, redis, before + during, where, committed)
        finally:
            pause(worker, signal.SIGCONT)
        # Then Valkey up but refusing writes (maxmemory reached): also an outage to wait out.
        retries = metric(s.web_port, "streamseg_store_retries_total")
        await redis.config_set("maxmemory", "1")
        await produce_tracked(s, after)
        await wait_until(lambda: metric(s.web_port, "streamseg_store_retries_total") >= retries + 3,
                         30, "the worker to retry against a full Valkey")
        await redis.config_set("maxmemory", "0")
        await wait_drained(s, len(wl.records), [worker])
        await assert_features_match_reference(s, redis, wl)
        await assert_memberships_published(s, redis, wl)
    finally:
        worker.stop()
        await redis.aclose()
        valkey.stop()


async def test_broker_unreachable_10s_mid_stream__worker_recovers_and_loses_nothing(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    with private_broker(tmp_path) as proxy:
        s = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{proxy.port}"})
        await ensure_topics(s)
        wl = make_workload(s, customers=100, seed=14)
        before, after = wl.chunks(0.6)
        worker = start_worker(s, tmp_path, "worker")
        with running(worker):
            await produce_tracked(s, before)
            await wait_until(lambda: events_seen(s.web_port, "processed") > 0, 60, "the worker to start")
            proxy.cut()  # while the first half is being worked on (unless the worker is very fast)
            await asyncio.sleep(OUTAGE_S)  # the partition itself
            proxy.restore()
            await produce_tracked(s, after)
            await wait_drained(s, len(wl.records), [worker])
        await assert_features_match_reference(s, redis_client, wl)
        await assert_memberships_published(s, redis_client, wl)


# --- bad input at volume, through the real worker -------------------------------------------


async def test_thousands_of_hostile_messages__every_element_processed_or_dead_lettered_once(
    settings: Settings, worker: WorkerProcess
) -> None:
    inputs = list(fuzz_inputs(seed=8, n=3_000))
    topic = {"click": settings.topic_clickstream, "transaction": settings.topic_transactions}
    keys = (None, b"c1", b"\xff\xfe")  # no key, a customer, not UTF-8 (a null value needs a key)
    records: list[Record] = [(topic[inp.kind], keys[i % 3] or (b"k" if inp.raw is None else None),
                              inp.raw) for i, inp in enumerate(inputs)]
    await produce_tracked(settings, records, max_request_size=8 << 20)  # values up to 5 MB
    await wait_drained(settings, len(records), [worker])

    dead = await read_topic(settings, settings.topic_dlq)
    places = Counter((d["source_topic"], d["source_partition"], d["source_offset"], d["index"])
                     for d in dead)
    assert max(places.values()) == 1, "an element was dead-lettered twice"
    assert {d["reason"] for d in dead} <= REASONS
    port = settings.web_port
    accepted = events_seen(port, "processed") + events_seen(port, "duplicate")
    elements = sum(len(positions(inp.raw)) for inp in inputs)
    assert accepted + len(dead) == elements, (accepted, len(dead), elements)
    assert accepted > 0 and len(dead) > 0
    assert metric(port, "streamseg_dead_letters_total") == len(dead)
