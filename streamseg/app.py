"""The Faust application: input batches, output topics, web views, timers.

Input records reach the :class:`Engine` a whole fetch at a time through
:mod:`streamseg.ingest` (Faust's own per-message stream path costs more than
the engine does per event); their offsets are acknowledged only after the
engine's Redis writes and Kafka publishes for that batch succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

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
from streamseg.metrics import Metrics
from streamseg.segmenting.sync import ModelSync
from streamseg.settings import Settings

log = logging.getLogger(__name__)


class FaustPublisher:
    """Publishes through the Faust app's producer and waits for every ack."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def publish(self, records: Sequence[OutRecord]) -> None:
        producer = self.app.producer
        futures = [await producer.send(topic, key, value, partition=None, timestamp=None,
                                       headers=None) for topic, key, value in records]
        await asyncio.gather(*futures)


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


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> tuple[faust.App, Engine]:
    """A Faust app wired to a fresh engine (store, segmenter, metrics)."""
    registry = registry or CollectorRegistry()
    metrics = Metrics(registry)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_list],
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=settings.web_port > 0,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        broker_max_poll_records=settings.batch_max,
        producer_linger_ms=1,
        producer_acks=-1,
        cython_optimizations=True,
    )
    store = RedisFeatureStore.from_url(
        settings.redis_url, Keys(settings.key_prefix),
        dedup_horizon_days=settings.dedup_horizon_days, retention_days=settings.retention_days,
        halflife_days=HALFLIFE_DAYS,
    )
    engine = Engine(settings, store, build_segmenter(settings), FaustPublisher(app), metrics,
                    standalone=False)
    sync = ModelSync(settings, engine, lambda snap: restore_segmenter(settings, snap))
    batch_topic(app, settings.input_topics, _WhenLoaded(engine, sync.loaded),
                fetch_max_wait_ms=settings.fetch_max_wait_ms)

    @app.on_partitions_assigned.connect  # type: ignore[misc,arg-type]
    async def log_assignment(sender: object, assigned: set[faust.types.TP], **_: object) -> None:
        mine = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned if tp.topic in settings.input_topics)
        log.info("input partitions assigned: %s", ", ".join(mine) or "none")

    @app.task
    async def follow_model_topic() -> None:
        await sync.run()

    @app.timer(settings.model_sync_s)
    async def publish_local_model() -> None:
        await _guard("publishing the local model", sync.publish_local)

    @app.timer(settings.model_sync_s, on_leader=True)
    async def merge_models() -> None:
        await _guard("merging models", sync.lead)

    @app.timer(settings.catalog_refresh_s, on_leader=True)
    async def refresh_catalog() -> None:
        await _guard("refreshing the catalog", sync.refresh_catalog)

    @app.timer(min(1.0, settings.model_sync_s))
    async def assign_held_back() -> None:
        await _guard("assigning held-back customers", engine.flush_pending)

    @app.timer(max(5.0, settings.model_sync_s))
    async def load_profiles() -> None:
        await _guard("loading profiles", sync.load_profiles)

    @app.timer(1.0)
    async def refresh_segment_sizes() -> None:
        try:
            sizes = await store.segment_sizes()
        except Exception as exc:  # a Redis outage must not kill the timer
            log.debug("segment sizes unavailable: %s", exc)
            return
        metrics.segment_size.clear()
        for sid, n in sizes.items():
            metrics.segment_size.labels(str(sid), engine.name_of(sid)).set(n)

    @app.page("/metrics")
    async def metrics_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # aiohttp refuses a charset inside content_type=, so set the header itself
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        redis_ok = await store.ping()
        model_ready = engine.model is not None
        ready = redis_ok and model_ready
        body = {"ready": ready, "redis": redis_ok, "model_ready": model_ready,
                "model_version": engine.model.version if engine.model else 0}
        return web.json(body, status=200 if ready else 503)

    app.streamseg_engine = engine  # type: ignore[attr-defined]
    app.streamseg_sync = sync  # type: ignore[attr-defined]
    return app, engine


async def _guard(what: str, op: Callable[[], Awaitable[object]]) -> None:
    """Timers must survive outages: log and try again next tick."""
    try:
        await op()
    except Exception as exc:
        log.warning("%s failed: %r", what, exc)
