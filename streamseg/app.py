"""The Faust application: input agent, output topics, web views, timers.

The agent body is a paragraph: take a small batch of events per partition
(bounded by count and a few milliseconds), hand it to the :class:`Engine`, and
let Faust acknowledge the offsets when the loop comes round again, i.e. only
after the engine's Redis writes and Kafka publishes for that batch succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamseg.engine import Engine, InMessage, OutRecord, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.registry import HALFLIFE_DAYS
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.rescore import sweep
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
        stream_buffer_maxsize=max(4096, settings.batch_max * 4),
        producer_linger_ms=1,
        producer_acks=-1,
        cython_optimizations=True,
    )
    store = RedisFeatureStore.from_url(
        settings.redis_url, Keys(settings.key_prefix),
        dedup_horizon_days=settings.dedup_horizon_days, retention_days=settings.retention_days,
        halflife_days=HALFLIFE_DAYS,
    )
    engine = Engine(settings, store, build_segmenter(settings), FaustPublisher(app), metrics)
    inputs = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")
    within = settings.batch_within_ms / 1000.0

    @app.agent(inputs, name="segment")
    async def segment(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_max, within):  # type: ignore[attr-defined]
            await engine.process([_message(e) for e in events])

    @app.timer(1.0)
    async def refresh_segment_sizes() -> None:
        try:
            sizes = await store.segment_sizes()
        except Exception as exc:  # a Redis outage must not kill the timer
            log.debug("segment sizes unavailable: %s", exc)
            return
        metrics.segment_size.clear()
        for sid, n in sizes.items():
            metrics.segment_size.labels(str(sid), engine.names.get(sid, f"Segment {sid}")).set(n)

    @app.timer(settings.rescore_every_s, on_leader=True)
    async def rescore_stale_customers() -> None:
        try:
            await sweep(engine, older_than_days=settings.rescore_after_hours / 24.0,
                        batch=settings.rescore_batch, max_customers=settings.rescore_max)
        except Exception:  # the sweep must not kill the timer; the next tick retries
            log.exception("re-scoring sweep failed")

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
        ready = redis_ok and engine.segmenter.ready
        body = {"ready": ready, "redis": redis_ok, "model_ready": engine.segmenter.ready,
                "model_version": engine.segmenter.version}
        return web.json(body, status=200 if ready else 503)

    app.streamseg_engine = engine  # type: ignore[attr-defined]
    return app, engine


def _message(event: faust.EventT) -> InMessage:
    m = event.message
    return InMessage(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
