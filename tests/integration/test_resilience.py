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
import os
import signal
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamseg.devstack import ManagedProcess, free_port
from streamseg.devstack.processes import tansu_binary, valkey_binary, wait_for_port
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
from tests.fuzzing import REASONS, fuzz_inputs, positions

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
    A ``None`` may recur: a worker killed after publishing a first assignment
    but before storing it leaves Valkey without one, so the next assignment is
    a first one again.
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
            prev = r["previous_segment_id"]
            if prev is not None and prev not in {p["segment_id"] for p in recs[:i]}:
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


async def produce_tracked(settings: Settings, records: list[Record]) -> list[tuple[TopicPartition, int]]:
    """Produce ``records``; return where each one landed (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list)
    await producer.start()
    try:
        sent = [await producer.send(topic, key=key, value=value) for topic, key, value in records]
        metas = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return [(TopicPartition(m.topic, m.partition), m.offset) for m in metas]


async def committed_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """Per input partition, the next offset the worker group will read (0 if none committed)."""
    tps = [TopicPartition(t, p) for t in settings.input_topics for p in range(settings.topic_partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=tps)
    finally:
        await admin.close()
    return {tp: max(0, committed[tp].offset) if committed.get(tp) else 0 for tp in tps}


async def committed_total(settings: Settings) -> int:
    """Input offsets the worker group has committed, summed over partitions.

    Offsets of a fresh topic run 0, 1, 2, ... so once every input record is
    processed this equals the number of records produced. (Tansu's reported
    end offsets can lag the last record, so they are no drain signal.)
    """
    return sum((await committed_offsets(settings)).values())


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


def order_message(settings: Settings, offset: int, customer: str) -> InMessage:
    value = orjson.dumps({"event_id": f"o{offset}", "customer_id": customer, "currency": "EUR",
                          "ts": NOW_MS - 1000 + offset, "amount": 10.0})
    return InMessage(settings.topic_transactions, 0, offset, customer.encode(), value)


def feature_store(settings: Settings) -> RedisFeatureStore:
    return RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                      dedup_horizon_days=settings.dedup_horizon_days,
                                      retention_days=settings.retention_days)


async def test_worker_killed_between_publish_and_membership_write__redelivery_republishes(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    store = feature_store(settings)
    out = RecordingPublisher()

    def engine(st: FeatureStore, segment: int) -> Engine:
        return Engine(settings, st, ScriptedSegmenter(segment), out, Metrics(CollectorRegistry()))

    def order(offset: int) -> list[InMessage]:
        return [order_message(settings, offset, "c1")]

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
        await wait_until(lambda: events_seen(settings.web_port, "processed") >= 200, 60,
                         "the first worker to be busy")
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


async def test_batch_redis_refuses_for_good__goes_to_the_dlq_whole_instead_of_raising(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    # Raising would reach Faust, which acknowledges the batch anyway: it would be lost.
    await redis_client.set(Keys(settings.key_prefix).state("c1"), "not a hash")  # WRONGTYPE
    store = feature_store(settings)
    out = RecordingPublisher()
    engine = Engine(settings, store, ScriptedSegmenter(0), out, Metrics(CollectorRegistry()))
    bad_json = InMessage(settings.topic_transactions, 0, 2, b"c3", b'{"event_id": ')
    try:
        report = await engine.process([order_message(settings, 0, "c1"),
                                       order_message(settings, 1, "c2"), bad_json])
    finally:
        await store.close()
    dead = [orjson.loads(v) for topic, _, v in out.records if topic == settings.topic_dlq]
    assert sorted((d["source_offset"], d["reason"]) for d in dead) == [
        (0, "processing_error"), (1, "processing_error"), (2, "malformed_json")]
    assert "WRONGTYPE" in dead[-1]["detail"] and report.dead_letters == 3
    assert engine.metrics.registry.get_sample_value(
        "streamseg_dead_letters_total", {"reason": "processing_error"}) == 2


# --- 6. rebalance ------------------------------------------------------------------------


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
            await produce(settings, shared)
            await wait_until(lambda: events_seen(other.web_port, "processed") > 0, 90,
                             "the second worker to be given partitions and process events")
        # the second worker has left the group (SIGTERM) while the stream goes on
        await produce(settings, after)
        await wait_drained(settings, len(wl.records), [first])
        assert events_seen(settings.web_port, "processed") < len(wl.records), "work was shared"
    await assert_features_match_reference(settings, redis_client, wl)
    await assert_memberships_published(settings, redis_client, wl)


# --- 7. outages ----------------------------------------------------------------------------

OUTAGE_S = 10.0


class PrivateValkey:
    """A Valkey of one test's own, persisted (AOF, fsync always) so it can stop and come back.

    The session-wide Valkey serves every test, so it cannot be taken away.
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "valkey"
        self.dir.mkdir()
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateValkey:
        argv = [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)]
        self.proc = ManagedProcess("valkey", argv, self.dir / "valkey.log").start()
        wait_for_port(self.port, 30, self.proc.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def pause(worker: WorkerProcess, sig: signal.Signals) -> None:
    """SIGSTOP / SIGCONT a worker: freeze it to look at the world it left."""
    assert worker.proc.proc is not None
    os.killpg(worker.proc.proc.pid, sig)


async def assert_committed_events_applied(
    settings: Settings, redis: aioredis.Redis, records: list[Record],
    where: list[tuple[TopicPartition, int]], committed: dict[TopicPartition, int],
) -> None:
    """Every input record below its partition's committed offset is applied in Valkey."""
    keys = Keys(settings.key_prefix)
    acked = [orjson.loads(value) for (_, _, value), (tp, offset) in zip(records, where, strict=True)
             if value is not None and offset < committed[tp]]
    assert acked, "nothing was committed: the check would prove nothing"
    pipe = redis.pipeline(transaction=False)
    for ev in acked:
        pipe.zscore(keys.seen(ev["customer_id"]), f"e:{ev['event_id']}")
    missing = [ev["event_id"] for ev, score in zip(acked, await pipe.execute(), strict=True)
               if score is None]
    assert not missing, f"{len(missing)} of {len(acked)} committed events were never applied: {missing[:5]}"


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


class TcpProxy:
    """127.0.0.1:port -> target port, on a thread of its own; :meth:`cut` is a network partition.

    While cut, every open connection is reset and new ones are reset on accept.
    """

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)
        self.links: set[asyncio.StreamWriter] = set()
        self.open = True
        self.server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        self._call(self._set(False))

    def restore(self) -> None:
        self._call(self._set(True))

    def close(self) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _call(self, coro: Awaitable[None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _set(self, open_: bool) -> None:
        self.open = open_
        if not open_:
            for w in list(self.links):
                w.transport.abort()

    async def _close(self) -> None:
        await self._set(False)
        if self.server is not None:
            self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self.links |= pair
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.links -= pair


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()  # Kafka never half-closes: one side gone ends the link


@contextlib.contextmanager
def private_broker(workdir: Path) -> Iterator[TcpProxy]:
    """A Tansu of one test's own that every client reaches through a :class:`TcpProxy`.

    Tansu advertises the proxy's address, so after bootstrap clients still
    connect through it. Tansu keeps topics in memory, so it must keep running
    through the partition: the proxy, not the broker, is cut.
    """
    port = free_port()
    proxy = TcpProxy(port).start()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}", "--storage-engine", "memory://tansu/"]
    broker = ManagedProcess("broker", argv, workdir / "broker.log").start()
    try:
        wait_for_port(port, 30, broker.proc)
        yield proxy
    finally:
        broker.stop()
        proxy.close()


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
            proxy.cut()
            assert events_seen(s.web_port, "processed") < len(before), "the cut must come mid-stream"
            await asyncio.sleep(OUTAGE_S)  # the partition itself
            proxy.restore()
            await produce_tracked(s, after)
            await wait_drained(s, len(wl.records), [worker])
        await assert_features_match_reference(s, redis_client, wl)
        await assert_memberships_published(s, redis_client, wl)


# --- 8. bad input at volume, through the real worker ----------------------------------------


async def test_thousands_of_hostile_messages__every_element_processed_or_dead_lettered_once(
    settings: Settings, worker: WorkerProcess
) -> None:
    inputs = list(fuzz_inputs(seed=8, n=3_000))
    topic = {"click": settings.topic_clickstream, "transaction": settings.topic_transactions}
    keys = (None, b"c1", b"\xff\xfe")  # no key, a customer, not UTF-8 (a null value needs a key)
    records: list[Record] = [(topic[inp.kind], keys[i % 3] or (b"k" if inp.raw is None else None),
                              inp.raw) for i, inp in enumerate(inputs)]
    await produce_tracked(settings, records)
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
