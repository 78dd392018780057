"""Real Apache Kafka + real Valkey, started once per test session.

Every integration test runs on Apache Kafka (one KRaft node, from the jars
``streamseg kafka fetch`` resolves); tests marked ``tansu`` run a second time
on the embedded Tansu broker, so the pip-only fallback stays honest. A missing
JDK or missing jars fail the Kafka tests with the command to run; nothing skips.

Every test gets its own topic names, consumer group and Redis key prefix
(like Faust's ``unique_topic`` fixture), so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamseg.devstack import DevStack, ManagedProcess, free_port
from streamseg.devstack.processes import wait_for_port
from streamseg.devstack.valkey_cluster import ValkeyCluster
from streamseg.features.cluster import connect, is_cluster_url
from streamseg.settings import Settings
from streamseg.topics import ensure_topics

pytestmark = pytest.mark.integration


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the session's stack runs on Kafka; ``tansu``-marked ones on Tansu too."""
    if "stack" in metafunc.fixturenames:
        brokers = ["kafka", "tansu"] if metafunc.definition.get_closest_marker("tansu") else ["kafka"]
        metafunc.parametrize("stack", brokers, indirect=True, scope="session")


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    broker = getattr(request, "param", "kafka")
    with DevStack(workdir=tmp_path_factory.mktemp(f"devstack-{broker}"), broker=broker) as st:
        yield st


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """3 masters + 3 replicas on loopback, shared by the Redis Cluster tests (fresh key prefixes)."""
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def unique_settings(stack: DevStack, **overrides: object) -> Settings:
    """Settings with this test's own topics, consumer group, key prefix and web port."""
    tag = uuid.uuid4().hex[:8]
    base: dict[str, object] = dict(
        kafka_bootstrap=stack.bootstrap,
        redis_url=stack.redis_url,
        kafka_idempotence=stack.broker == "kafka",
        app_id=f"streamseg-test-{tag}",
        topic_clickstream=f"t{tag}.clickstream.v1",
        topic_transactions=f"t{tag}.transactions.v1",
        topic_dlq=f"t{tag}.dlq.v1",
        topic_segment_updates=f"t{tag}.segment-updates.v1",
        topic_drift=f"t{tag}.drift.v1",
        topic_segments=f"t{tag}.segments.v1",
        topic_audit=f"t{tag}.audit.v1",
        topic_model=f"t{tag}.model.v1",
        model_sync_s=1.0,
        topic_partitions=2,
        key_prefix=f"t{tag}",
        web_port=free_port(),
        n_segments=3,
        model_warmup=30,
        log_level="info",
    )
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def settings(stack: DevStack) -> Settings:
    return unique_settings(stack)


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"STREAMSEG_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """``streamseg worker`` (or ``command``, serving on ``port``) as a real child process."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker",
                 command: str = "worker", port: int | None = None) -> None:
        self.settings = settings
        self.port = port or settings.web_port
        self.proc = ManagedProcess(name, [sys.executable, "-m", "streamseg", command],
                                   log_dir / f"{name}.log", settings_env(settings))

    def start(self) -> WorkerProcess:
        self.proc.start()
        wait_for_port(self.port, 60, self.proc.proc)
        return self

    def stop(self) -> None:
        self.proc.stop()

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    asyncio.run(ensure_topics(settings))
    w = WorkerProcess(settings, tmp_path).start()
    yield w
    w.stop()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = connect(settings.redis_url) if is_cluster_url(settings.redis_url) \
        else aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def produce(settings: Settings, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(settings: Settings, topic: str, *, until: int, timeout: float = 60.0,
                  settle: float = 0.0) -> list[dict]:
    """Read ``topic`` from the start until ``until`` records (then ``settle`` s more) or timeout."""
    consumer = AIOKafkaConsumer(  # no group: joining one costs Tansu ~5 s, and nothing is committed
        topic, bootstrap_servers=settings.kafka_bootstrap_list, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend({"key": m.key, "value": orjson.loads(m.value) if m.value else None,
                            "partition": m.partition, "offset": m.offset} for m in msgs)
            if len(out) >= until:
                if settle_until is None:
                    settle_until = time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return out
