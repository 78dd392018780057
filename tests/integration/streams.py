"""A deterministic event stream, its from-scratch reference, and what a worker group did with it.

Helpers for the resilience tests: build a workload from planted personas,
produce it, wait until the worker group has committed every input offset, and
compare Valkey and the output topics with what one clean pass must give.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from streamseg.events.decode import decode_message
from streamseg.events.models import Event
from streamseg.features.keys import Keys
from streamseg.features.reference import accumulate
from streamseg.features.registry import DAY_MS, HALFLIFE_DAYS
from streamseg.features.store import RedisFeatureStore
from streamseg.generate import assign_personas, simulate
from streamseg.settings import Settings
from tests.support import wait_until

from .conftest import WorkerProcess

NOW_MS = int(time.time() * 1000)
Record = tuple[str, bytes | None, bytes | None]


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
        # membership fields (seg, seg_dist, ...) and the risk band (val_band) are no accumulators
        got = {k.decode(): float(v) for k, v in raw.items()
               if not k.startswith(b"seg") and k != b"val_band"}
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
                                       workload: Workload, settle_s: float = 60) -> None:
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

    A worker still runs while this checks: a re-scoring sweep or a held-back
    assignment may have published a change and not yet stored it (it stores
    right after), so Valkey and the topic are compared again until they agree,
    for at most ``settle_s``; a membership that stays unpublished still fails.
    """
    problems: list[tuple] = []

    async def agree() -> bool:
        problems[:] = await _membership_problems(settings, redis, workload)
        return not problems

    await wait_until(agree, settle_s,
                     lambda: f"Valkey and {settings.topic_segment_updates} to agree: "
                             f"{len(problems)} membership problems: {problems[:5]}")


async def _membership_problems(settings: Settings, redis: aioredis.Redis,
                               workload: Workload) -> list[tuple]:
    """What :func:`assert_memberships_published` finds wrong now (Valkey read first)."""
    keys = Keys(settings.key_prefix)
    pipe = redis.pipeline(transaction=False)
    for cid in workload.events:
        pipe.hget(keys.state(cid), "seg")
    stored = dict(zip(workload.events, await pipe.execute(), strict=True))
    problems: list[tuple] = [(cid, "no membership in Valkey") for cid, seg in stored.items() if seg is None]

    history: dict[str, list[dict]] = defaultdict(list)
    for rec in await read_topic(settings, settings.topic_segment_updates):
        history[rec["customer_id"]].append(rec)
    for cid, seg in stored.items():
        recs = history.get(cid, [])
        if seg is None:
            continue
        if not recs or recs[-1]["segment_id"] != int(float(seg)):
            problems.append((cid, "latest record != Valkey", seg, [r["segment_id"] for r in recs]))
            continue
        if recs[0]["previous_segment_id"] is not None:
            problems.append((cid, "first record is not a first assignment", recs[0]))
        for i, r in enumerate(recs[1:], 1):
            prev = r["previous_segment_id"]
            if prev is not None and prev not in {p["segment_id"] for p in recs[:i]}:
                problems.append((cid, "previous segment never published", r))
    return problems


# --- broker and worker observation -----------------------------------------------------


async def read_topic(settings: Settings, topic: str, partitions: int | None = None) -> list[dict]:
    """Every record of ``topic`` (of ``settings.topic_partitions`` partitions unless
    ``partitions`` says) written so far, ordered by (partition, offset).

    Tansu's ListOffsets may report an end a little behind the last record, so
    read until that end is passed and a further fetch brings nothing new.
    """
    tps = [TopicPartition(topic, p) for p in range(partitions or settings.topic_partitions)]
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


async def produce_tracked(settings: Settings, records: list[Record], *,
                         max_request_size: int = 1_048_576) -> list[tuple[TopicPartition, int]]:
    """Produce ``records``; return where each one landed (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list,
                                max_request_size=max_request_size)
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
    """Until the group has committed all ``produced`` input records (never more) and no
    customer waits for a first assignment.

    Customers whose events came before any model are held (``Keys.held``) and their
    events acknowledged; a worker's timer assigns them once it has a model (every
    second), so a committed stream alone does not mean every membership is written.
    """
    held = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),  # cluster too
                                      dedup_horizon_days=1, retention_days=1)

    async def drained() -> bool:
        for w in workers:
            assert w.proc.running, f"{w.proc.name} died:\n{w.log()[-3000:]}"
        done = await committed_total(settings)
        assert done <= produced, f"committed {done} offsets for {produced} records"
        return done == produced and not await held.held_count()

    try:
        await wait_until(drained, timeout, f"the worker group to commit all {produced} input "
                         "offsets and assign every held-back customer")
    finally:
        await held.close()


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (matching ``labels``) on a worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def input_assignment(worker: WorkerProcess) -> set[tuple[str, int]] | None:
    """The input partitions the worker last logged as assigned (None: none yet)."""
    lines = re.findall(r"input partitions assigned: (.*)", worker.log())
    if not lines or lines[-1].strip() == "none":
        return None
    return {(topic, int(p)) for topic, p in (tp.strip().rsplit(":", 1) for tp in lines[-1].split(","))}


def events_seen(port: int, outcome: str) -> float:
    try:
        return metric(port, "streamseg_events_total", outcome=outcome)
    except OSError:  # the worker's web server is not up (yet)
        return 0.0


def model_ready(port: int) -> bool:
    """The worker's model has warmed up, so every customer it saw has a segment.

    A worker that dies or leaves while warming up has committed the events of
    customers it never assigned; they get a segment only with their next event.
    """
    try:
        return metric(port, "streamseg_model_version") >= 1
    except OSError:
        return False


def start_worker(settings: Settings, tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(settings, tmp_path, name).start()


@contextlib.contextmanager
def running(*workers: WorkerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for w in workers:
            w.stop()


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
