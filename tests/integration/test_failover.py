"""Kafka broker failover under load, on a three-node KRaft cluster of this module's own.

Each test streams more than 100,000 events (planted personas, keyed by customer)
at a steady rate, with ``acks=all`` and an idempotent producer, through one
real ``streamseg worker`` subprocess, and in the middle of the stream, while the
worker's consumer group still has a backlog (committed offsets behind the end
offsets, asserted at the moment of the fault):

* ``kill -9`` one node: the leader of an input partition, the leader of a
  segment-updates partition, or the active KRaft controller (found with
  DescribeQuorum: in KRaft, a Metadata response's ``controller_id`` is a random
  live broker, not the controller); the producer keeps going, the worker must
  carry on with two nodes, then the node is started again on its own data;
* ``kill -9`` every node, so the whole cluster refuses connections for 20 s,
  then start them all again on their data.

Afterwards, once the group has committed every input offset:

* every customer's features in Valkey equal one clean pass
  (:func:`streamseg.features.reference.accumulate`);
* the worker counted exactly as many applied events as the stream holds distinct
  events (it never restarted, so its counter covers the whole run): nothing was
  applied twice and nothing was lost, and nothing went to the dead-letter topic;
* every membership change the worker counted is on segment-updates, and every
  customer's last record there is its membership in Valkey
  (:func:`assert_memberships_published`);
* the worker process is the one started before the stream: same PID, still running.

The cluster is shared by the tests (fresh topics, group and key prefix each), so a
test starts by waiting until all three nodes run and every partition is fully
in sync again.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from streamseg.devstack import DevStack
from streamseg.devstack.kafka import KafkaCluster
from streamseg.features.reference import accepted
from streamseg.features.registry import DAY_MS
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.support import retry_transient

from .conftest import WorkerProcess, unique_settings
from .faults import active_controller
from .streams import (
    Record,
    Workload,
    assert_features_match_reference,
    assert_memberships_published,
    committed_offsets,
    events_seen,
    make_workload,
    metric,
    model_ready,
    read_topic,
    start_worker,
    wait_drained,
    wait_until,
)

T = TypeVar("T")
#: What asking the group coordinator may raise while it moves to another node or loads the group.
TRANSIENT = (KafkaError, OSError, TimeoutError)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

#: ~43 events per customer over 20 simulated days: a little over 100,000 events.
CUSTOMERS = 2_400
MIN_EVENTS = 100_000
#: Producer pace (events/s): about what one worker applies here when the machine is quiet, so
#: the stream lasts ~35 s and the worker has a backlog at the fault (deeper when the machine
#: is busy and the worker slower).
RATE = 3_000.0
#: The fault strikes once this share of the stream is sent (and the worker is busy).
FAULT_AT = 0.3
OUTAGE_S = 20.0
#: Every node down and back: starting three JVMs on two shared cores takes a while.
NODE_START_TIMEOUT_S = 180.0


# --- the cluster and the stream -------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(workdir=tmp_path_factory.mktemp("failover"), broker="kafka", kafka_nodes=3) as st:
        yield st
        for node in kafka_of(st).members:  # scratch data: no controlled shutdown to wait for
            node.kill()


@pytest.fixture(scope="module")
def stream() -> Workload:
    """The events every test sends (topic names of the default settings; see :func:`retarget`)."""
    wl = make_workload(Settings(), customers=CUSTOMERS, seed=31)
    assert len(wl.records) >= MIN_EVENTS, len(wl.records)
    return wl


def retarget(wl: Workload, settings: Settings) -> Workload:
    """The same records, sent to ``settings``' input topics."""
    default = Settings()
    names = {default.topic_clickstream: settings.topic_clickstream,
             default.topic_transactions: settings.topic_transactions}
    return Workload([(names[t], k, v) for t, k, v in wl.records], wl.events)


def kafka_of(stack: DevStack) -> KafkaCluster:
    assert stack.kafka is not None
    return stack.kafka


class PacedProducer:
    """Sends records at ``rate`` per second, ``acks=all``, idempotent; any failed send fails the test.

    Sends are started at a steady pace (a stall, e.g. the whole cluster away,
    is caught up on afterwards); ``request_timeout_ms`` outlasts every outage
    the tests inject, so records wait in the producer instead of failing.
    """

    def __init__(self, settings: Settings, records: list[Record], rate: float) -> None:
        self.settings = settings
        self.records = records
        self.rate = rate
        self.sent = 0
        self.acked = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> PacedProducer:
        self.task = asyncio.create_task(self._run())
        return self

    async def wait(self) -> None:
        assert self.task is not None
        await self.task

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap_list,
                                    acks="all", enable_idempotence=True, linger_ms=5,
                                    request_timeout_ms=240_000, retry_backoff_ms=200)
        await producer.start()
        pending: list[asyncio.Future[object]] = []

        def done(fut: asyncio.Future[object]) -> None:
            if not fut.cancelled() and fut.exception() is None:
                self.acked += 1

        try:
            t0 = time.monotonic()
            for n, (topic, key, value) in enumerate(self.records):
                if n % 100 == 0:
                    await asyncio.sleep(max(0.0, t0 + n / self.rate - time.monotonic()))
                fut = await producer.send(topic, key=key, value=value)
                fut.add_done_callback(done)
                pending.append(fut)
                self.sent = n + 1
            await producer.flush()
            results = await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await producer.stop()
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, f"{len(failed)} of {len(results)} sends failed: {failed[:3]!r}"


# --- looking at the cluster ----------------------------------------------------------------------


async def with_admin(settings: Settings, op: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    await admin.start()
    try:
        return await op(admin)
    finally:
        await admin.close()


async def partition_leader(settings: Settings, topic: str, partition: int) -> int:
    """The node id leading ``topic``'s ``partition`` now (Metadata)."""
    [desc] = await with_admin(settings, lambda a: a.describe_topics([topic]))
    [part] = [p for p in desc["partitions"] if p["partition"] == partition]
    assert part["error_code"] == 0 and part["leader"] >= 0, part
    return int(part["leader"])


async def under_replicated(settings: Settings) -> list[tuple[str, int, list[int]]]:
    """Partitions of any topic whose in-sync replicas are fewer than their replicas."""
    topics = await with_admin(settings, lambda a: a.describe_topics())
    return [(t["topic"], p["partition"], p["isr"]) for t in topics
            for p in t["partitions"] if len(p["isr"]) < len(p["replicas"]) or p["leader"] < 0]


async def input_lag(settings: Settings) -> tuple[int, dict[TopicPartition, int]]:
    """The worker group's backlog: input end offsets minus committed offsets, summed."""
    committed = await committed_offsets(settings)
    ends = {tp: end for topic in settings.input_topics
            for tp, end in (await end_offsets(settings, topic)).items()}
    return sum(ends[tp] - committed[tp] for tp in committed), committed


async def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_list,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


@pytest.fixture
async def healthy(cluster: DevStack) -> DevStack:
    """All three nodes run and every partition of every topic is fully in sync (a test before may
    have restarted a node, which then catches up)."""
    kafka = kafka_of(cluster)
    down = [n for n in kafka.members if not n.running]
    for node in down:
        node.start()
    for node in down:
        await asyncio.to_thread(node.wait_started, NODE_START_TIMEOUT_S)
    probe = Settings(kafka_bootstrap=cluster.bootstrap)
    await wait_until(lambda: _all_in_sync(probe), 180, "every partition to have 3 in-sync replicas")
    return cluster


async def _all_in_sync(settings: Settings) -> bool:
    try:
        return not await under_replicated(settings)
    except Exception:  # a node still starting
        return False


# --- one run: stream, fault, drain, check --------------------------------------------------------


class Run:
    """A worker on fresh topics of the shared cluster, and the stream sent to it."""

    def __init__(self, cluster: DevStack, stream: Workload, tmp_path: Path) -> None:
        self.settings = unique_settings(
            cluster, topic_partitions=3,
            # the engine's default (1) would put each of its topics on a single node
            topic_replication=3,
            # 20 simulated days pass in well under a minute: day-long drift windows, as
            # `streamseg dev` uses for replayed history (one-minute windows would close
            # ~29,000 windows in that time and take most of the worker's CPU)
            drift_windows="1d,7d",
            # no customer-value fit: a pymc fit in the leader's sample child would take a
            # core from the worker for much of the stream, and failover is not what it tests
            value_fit=False)
        self.kafka = kafka_of(cluster)
        self.wl = retarget(stream, self.settings)
        self.tmp_path = tmp_path
        self.worker: WorkerProcess | None = None
        self.pid = 0
        self.producer: PacedProducer | None = None
        self.updates_at_fault: dict[TopicPartition, int] = {}
        self.t0 = time.monotonic()
        self.timeline: list[str] = []  # printed as it goes: pytest shows it when a test fails

    def mark(self, what: str) -> None:
        sent = self.producer.sent if self.producer is not None else 0
        line = f"{time.monotonic() - self.t0:6.1f}s  sent {sent:>6}  {what}"
        self.timeline.append(line)
        print(line, flush=True)

    async def start(self) -> None:
        await ensure_topics(self.settings)
        self.worker = start_worker(self.settings, self.tmp_path, "worker")
        assert self.worker.proc.proc is not None
        self.pid = self.worker.proc.proc.pid
        self.producer = PacedProducer(self.settings, self.wl.records, RATE).start()

    @property
    def port(self) -> int:
        return self.settings.web_port

    @property
    def log_path(self) -> Path:
        assert self.worker is not None
        return self.worker.proc.log_path

    def log_tail(self) -> str:
        assert self.worker is not None
        return self.worker.log()[-4000:]

    async def start_busy(self) -> None:
        """:meth:`start`, then :meth:`until_busy`, noted on the timeline."""
        await self.start()
        self.mark(f"worker {self.pid} started (log: {self.log_path}), "
                  f"stream of {len(self.wl.records)} records at {RATE:.0f}/s")
        await self.until_busy()

    async def until_busy(self) -> None:
        """The worker has a model and works on the stream, and FAULT_AT of it is sent."""
        assert self.producer is not None
        fault_at = int(len(self.wl.records) * FAULT_AT)
        await wait_until(lambda: self._alive() and self.producer.sent >= fault_at  # type: ignore[union-attr]
                         and model_ready(self.port) and events_seen(self.port, "processed") > 1000,
                         180, f"{fault_at} events sent and the worker busy with a model")

    def _alive(self) -> bool:
        assert self.worker is not None
        assert self.worker.proc.running, f"the worker died:\n{self.log_tail()}"
        return True

    async def backlog_now(self) -> dict[TopicPartition, int]:
        """Assert the worker's group is behind the stream right now; its committed offsets.

        Also notes how far segment-updates has come, to show later that the worker
        published on after the fault (:meth:`finish`).
        """
        self.updates_at_fault = await end_offsets(self.settings, self.settings.topic_segment_updates)
        lag, committed = await input_lag(self.settings)
        self.mark(f"backlog {lag} input records (committed {sum(committed.values())})")
        assert lag > 0, "no backlog at the fault: the test would not show anything in flight"
        return committed

    async def until_progress_after(self, committed: dict[TopicPartition, int], more: int,
                                   what: str) -> None:
        """The group commits ``more`` offsets past ``committed``, and some on every input
        partition (those whose leader was killed too: they are read from a new leader)."""
        target = sum(committed.values()) + more

        async def progressed() -> bool:
            self._alive()
            try:
                now = await committed_offsets(self.settings)
            except TRANSIENT:  # the group coordinator is moving
                return False
            return sum(now.values()) >= target and all(now[tp] > committed[tp] for tp in committed)

        await wait_until(progressed, 180, what)

    async def finish(self, redis: aioredis.Redis) -> None:
        """Wait for the stream to be sent and drained, then check everything."""
        assert self.producer is not None and self.worker is not None
        await self.producer.wait()
        assert self.producer.acked == len(self.wl.records)
        self.mark("every record sent and acknowledged")
        await self.until_drained()
        self.mark(f"drained: {events_seen(self.port, 'duplicate'):.0f} redelivered events seen as "
                  f"duplicates, {metric(self.port, 'streamseg_publish_retries_total'):.0f} "
                  "publish retries")

        # the same worker process all along
        assert self.worker.proc.running and self.worker.proc.proc is not None
        assert self.worker.proc.proc.pid == self.pid, "the worker was restarted"

        # nothing lost, nothing applied twice, nothing dead-lettered
        horizon = self.settings.dedup_horizon_days * DAY_MS
        distinct = sum(len(accepted(evs, horizon)) for evs in self.wl.events.values())
        applied = events_seen(self.port, "processed")
        assert applied == distinct, f"the worker applied {applied:.0f} events, the stream holds {distinct}"
        assert metric(self.port, "streamseg_dead_letters_total") == 0
        assert not await read_topic(self.settings, self.settings.topic_dlq)
        await assert_features_match_reference(self.settings, redis, self.wl)

        # every membership change the worker made was published
        await assert_memberships_published(self.settings, redis, self.wl)
        counted = membership_changes(self.port)  # before reading the topic: a change is counted
        updates = await read_topic(self.settings, self.settings.topic_segment_updates)  # once published
        published = Counter((_label(u["previous_segment_id"]), str(u["segment_id"])) for u in updates
                            if u["previous_segment_id"] != u["segment_id"])
        assert counted, "the worker counted no membership change"
        short = {k: (n, published[k]) for k, n in counted.items() if published[k] < n}
        assert not short, f"changes counted but not published (counted, published): {short}"
        # and it published on after the fault, on every partition
        ends = await end_offsets(self.settings, self.settings.topic_segment_updates)
        assert all(ends[tp] > self.updates_at_fault[tp] for tp in ends), (self.updates_at_fault, ends)
        self.mark("checked")

    async def until_drained(self, timeout: float = 300) -> None:
        """:func:`wait_drained`, asked again when the group coordinator is away (moving to
        another node, or loading the group after a restart)."""
        worker = self.worker
        assert worker is not None
        await retry_transient(lambda remaining: wait_drained(
            self.settings, len(self.wl.records), [worker], timeout=max(1.0, remaining)),
            timeout, TRANSIENT)

    async def close(self) -> None:
        """Stop the producer (if a check failed before it finished) and the worker."""
        if self.producer is not None and self.producer.task is not None:
            self.producer.task.cancel()
            await asyncio.gather(self.producer.task, return_exceptions=True)
        if self.worker is not None:
            self.worker.stop()


def _label(segment: int | None) -> str:
    return "none" if segment is None else str(segment)


def membership_changes(port: int) -> Counter[tuple[str, str]]:
    """``streamseg_membership_changes_total`` of a worker, by (from, to) segment."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Counter[tuple[str, str]] = Counter()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "streamseg_membership_changes_total" and s.value:
                out[s.labels["from_segment"], s.labels["to_segment"]] += int(s.value)
    return out


@pytest.fixture
async def redis(cluster: DevStack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(cluster.redis_url)
    yield client
    await client.aclose()


# --- one node killed --------------------------------------------------------------------------------


async def input_partition_leader(run: Run) -> int:
    return await partition_leader(run.settings, run.settings.topic_clickstream, 0)


async def output_partition_leader(run: Run) -> int:
    return await partition_leader(run.settings, run.settings.topic_segment_updates, 0)


async def the_active_controller(run: Run) -> int:
    return await active_controller(run.settings.kafka_bootstrap_list)


@pytest.mark.parametrize("target", [input_partition_leader, output_partition_leader,
                                    the_active_controller],
                         ids=["input-partition-leader", "output-partition-leader", "active-controller"])
async def test_node_killed_under_load__worker_carries_on_and_counts_every_event_once(
    healthy: DevStack, stream: Workload, tmp_path: Path, redis: aioredis.Redis,
    target: Callable[[Run], Awaitable[int]],
) -> None:
    run = Run(healthy, stream, tmp_path)
    try:
        await run.start_busy()
        victim = run.kafka.node(await target(run))
        committed = await run.backlog_now()
        victim.kill()  # SIGKILL: no controlled shutdown, no leadership handed over
        assert not victim.running
        run.mark(f"killed node {victim.node_id}")
        # the worker works on with two nodes (new leaders, maybe a new controller and coordinator)
        await run.until_progress_after(committed, 5_000,
                                       f"the worker to go on with node {victim.node_id} down")
        run.mark("the worker commits again")
        await wait_until(lambda: _moved_from(victim.node_id, target, run), 120,
                         f"the role of node {victim.node_id} to pass to another node")
        victim.start()
        await asyncio.to_thread(victim.wait_started, NODE_START_TIMEOUT_S)
        run.mark(f"node {victim.node_id} back")
        await run.finish(redis)
    finally:
        await run.close()


async def _moved_from(node_id: int, role: Callable[[Run], Awaitable[int]], run: Run) -> bool:
    try:
        return await role(run) != node_id
    except (*TRANSIENT, AssertionError):  # no leader right now
        return False


# --- every node killed --------------------------------------------------------------------------------


async def test_whole_cluster_down_20s_mid_stream__worker_recovers_and_counts_every_event_once(
    healthy: DevStack, stream: Workload, tmp_path: Path, redis: aioredis.Redis,
) -> None:
    run = Run(healthy, stream, tmp_path)
    try:
        await run.start_busy()
        committed = await run.backlog_now()
        for node in run.kafka.members:
            node.kill()
        down_at = time.monotonic()
        run.mark("killed every node")
        assert not any(reachable(n.broker_port) for n in run.kafka.members)
        await asyncio.sleep(OUTAGE_S)  # the outage itself: every broker port refuses connections
        assert not any(reachable(n.broker_port) for n in run.kafka.members)
        assert run._alive() and time.monotonic() - down_at >= OUTAGE_S
        for node in run.kafka.members:
            node.start()
        for node in run.kafka.members:
            await asyncio.to_thread(node.wait_started, NODE_START_TIMEOUT_S)
        run.mark("every node back")
        await run.until_progress_after(committed, 5_000, "the worker to go on after the outage")
        run.mark("the worker commits again")
        await run.finish(redis)
    finally:
        await run.close()


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
