"""The Faust application: input batches, output topics; views and timers come from their domains.

:func:`create_app` is the worker's table of contents: the HTTP API
(``streamseg.api``), the model sync (``streamseg.segmenting.timers``), the
re-scoring sweep (``streamseg.rescore``), drift windows
(``streamseg.drift.timers``) and the worker's own metrics
(``streamseg.monitoring``) each register what they run. Process-wide tuning is
``streamseg.tuning``, done by the worker's entry point, not here.

Input records reach the :class:`Engine` a whole fetch at a time through
:mod:`streamseg.ingest` (Faust's own per-message stream path costs more than
the engine does per event); their offsets are acknowledged only after the
engine's Redis writes and Kafka publishes for that batch succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import faust
from prometheus_client import CollectorRegistry

from streamseg import api, monitoring, rescore
from streamseg.access_guard import AccessGuard
from streamseg.drift import timers as drift_timers
from streamseg.engine import (
    BatchReport,
    Engine,
    InMessage,
    OutRecord,
    Prepared,
    build_segmenter,
    restore_segmenter,
)
from streamseg.features.keys import Keys
from streamseg.features.registry import HALFLIFE_DAYS
from streamseg.features.store import RedisFeatureStore
from streamseg.ingest import batch_topic
from streamseg.kafka_security import faust_credentials
from streamseg.metrics import Metrics
from streamseg.publish.publisher import PartlyPublished
from streamseg.retry import is_record_refused
from streamseg.segmenting import timers as segmenting_timers
from streamseg.segmenting.offload import SampleProcess
from streamseg.segmenting.sync import ModelSync
from streamseg.settings import Settings
from streamseg.ticks import Ticks

log = logging.getLogger(__name__)


class FaustPublisher:
    """Publishes through the Faust app's producer and waits for every ack."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def publish(self, records: Sequence[OutRecord]) -> None:
        """Send all, wait for every ack; a refusal of some records after others were taken
        raises :class:`PartlyPublished` (from the refusal), naming those taken."""
        producer = self.app.producer
        futures = [await producer.send(topic, key, value, partition=None, timestamp=None,
                                       headers=None) for topic, key, value in records]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if not failed:
            return
        refused = next((r for r in failed if is_record_refused(r)), None)
        if refused is None or len(failed) == len(results):
            raise refused or failed[0]
        taken = {i for i, r in enumerate(results) if not isinstance(r, BaseException)}
        raise PartlyPublished(taken, len(results)) from refused


class _WhenLoaded:
    """The engine as the batch handler, holding batches until the model sync has
    restored the clusterer and read the latest global model."""

    def __init__(self, engine: Engine, loaded: asyncio.Event) -> None:
        self.engine = engine
        self.loaded = loaded

    def prepare(self, messages: Sequence[InMessage]) -> Prepared:
        return self.engine.prepare(messages)

    async def process(self, batch: Prepared) -> BatchReport:
        await self.loaded.wait()
        return await self.engine.process(batch)

    def apply_ahead(self, batch: Prepared) -> bool:
        return self.loaded.is_set() and self.engine.apply_ahead(batch)

    async def drop_ahead(self) -> None:
        await self.engine.drop_ahead()

    def backlog(self, more: bool) -> None:
        self.engine.pace.backlog(more)


@dataclass(frozen=True, slots=True)
class WorkerApp:
    """A worker's Faust app and the parts its callers reach for (``streamseg worker``, tests)."""

    app: faust.App
    engine: Engine
    sync: ModelSync
    access: AccessGuard


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> WorkerApp:
    """A Faust app wired to a fresh engine (store, segmenter, metrics), with every agent,
    view and timer registered by the module of its domain."""
    metrics = Metrics(registry or CollectorRegistry())
    app = faust_app(settings)
    store = RedisFeatureStore.from_url(
        settings.redis_url, Keys(settings.key_prefix),
        dedup_horizon_days=settings.dedup_horizon_days, retention_days=settings.retention_days,
        halflife_days=HALFLIFE_DAYS, wait_replicas=settings.redis_wait_replicas,
        history=settings.customer_history,
    )
    engine = Engine(settings, store, build_segmenter(settings), FaustPublisher(app), metrics,
                    standalone=False)
    if settings.sample_process:
        engine.leader.sampler = SampleProcess(settings.redis_url, settings.key_prefix,
                                              malloc_trim=settings.sample_malloc_trim,
                                              nice=settings.sample_nice)
        # customer-value fits in a child of their own (streamseg/leader/value.py)
        engine.leader.values.sampler = SampleProcess(settings.redis_url, settings.key_prefix,
                                                     malloc_trim=settings.sample_malloc_trim,
                                                     nice=settings.sample_nice)
    sync = ModelSync(settings, engine, lambda snap: restore_segmenter(settings, snap))
    access = AccessGuard(settings)
    ticks = Ticks(metrics.timer_failures, refused=access.stop_for)

    batch_topic(app, settings.input_topics, _WhenLoaded(engine, sync.loaded),
                batch_max=settings.batch_max, fetch_max_wait_ms=settings.fetch_max_wait_ms,
                on_access_denied=access.stop_for, idempotent=settings.kafka_idempotence)
    api.register(app, engine, store, settings)
    segmenting_timers.register(app, sync, engine, settings, ticks)
    rescore.register(app, engine, settings, ticks, engine.metrics,
                     reading_history=lambda: engine.pace.aside)
    drift_timers.register(app, engine, settings, ticks, store)
    monitoring.register(app, engine, store, sync.worker, settings, ticks)
    _connect_lifecycle(app, engine, settings)
    return WorkerApp(app, engine, sync, access)


def faust_app(settings: Settings) -> faust.App:
    """The Faust app a worker runs: its broker, web server and Kafka client options."""
    return faust.App(
        settings.app_id,
        datadir=settings.faust_datadir(),
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_list],
        # TLS / SASL for Faust's consumer and producer (None: PLAINTEXT); see kafka_security
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=settings.web_port > 0,
        web_in_thread=settings.web_in_thread,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication or 1,  # run_worker resolves 0
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        producer_linger_ms=1,
        producer_acks=-1,
        consumer_max_fetch_size=settings.fetch_partition_bytes,
        cython_optimizations=True,
    )


def _connect_lifecycle(app: faust.App, engine: Engine, settings: Settings) -> None:
    """Log each input assignment; stop the sample process before the worker shuts down."""

    @app.on_before_shutdown.connect  # type: ignore[misc,arg-type]
    async def stop_sample_process(sender: object, **_: object) -> None:
        if engine.leader.sampler is not None:
            await asyncio.to_thread(engine.leader.sampler.close)
        await engine.leader.values.close()

    @app.on_partitions_assigned.connect  # type: ignore[misc,arg-type]
    async def log_assignment(sender: object, assigned: set[faust.types.TP], **_: object) -> None:
        mine = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned if tp.topic in settings.input_topics)
        log.info("input partitions assigned: %s", ", ".join(mine) or "none")
