"""The two baselines the engine is measured against, as real Faust workers.

* ``bare``: a Faust agent that only decodes each message (orjson) and lets
  Faust ack it -- the framework's per-message ceiling on this machine.
* ``naive``: the same :class:`~streamseg.engine.Engine` fed one event at a
  time by a plain Faust agent, so every event costs its own Redis round trips,
  River learn/predict and awaited Kafka publish.

Both serve ``/metrics`` with the engine's own metric names
(``streamseg_events_total``, ``streamseg_processing_latency_seconds``), so the
runner scrapes every subject the same way. Run one with
``python -m streamseg.bench.subjects bare|naive`` and ``STREAMSEG_*`` settings.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from streamseg.app import FaustPublisher
from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.registry import HALFLIFE_DAYS
from streamseg.features.store import RedisFeatureStore
from streamseg.ingest import ShortFetchTransport
from streamseg.metrics import Metrics, exposition
from streamseg.settings import Settings


def _faust_app(settings: Settings, registry: CollectorRegistry) -> faust.App:
    """A Faust app with Faust's own defaults for the hot path (plus its Cython option)."""
    app = faust.App(
        settings.app_id,
        datadir=settings.faust_datadir(),
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_list],
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        cython_optimizations=True,
    )
    # the same fetch wait as the engine's consumer, so latency compares like with like
    app.transport = ShortFetchTransport(app.conf.broker_consumer, app,
                                        fetch_max_wait_ms=settings.fetch_max_wait_ms)

    @app.page("/metrics")
    async def metrics_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        names = request.query.getall("name[]", [])  # type: ignore[attr-defined]  # aiohttp's MultiDict
        return web.bytes(exposition(registry, names),
                         headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app


def bare_app(settings: Settings) -> faust.App:
    """Decode and ack, nothing else: what Faust itself costs per message."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    app = _faust_app(settings, registry)
    inputs = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")
    counters = {t: metrics.events.labels(t, "processed") for t in settings.input_topics}
    observe = metrics.latency.observe

    @app.agent(inputs, name="bare")
    async def bare(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            doc = orjson.loads(event.value)
            counters[event.message.topic].inc(len(doc) if isinstance(doc, list) else 1)
            observe(max(0.0, time.time() - event.message.timestamp))

    return app


def naive_app(settings: Settings) -> faust.App:
    """The engine, one event per call: one Redis round trip and one River step each."""
    registry = CollectorRegistry()
    app = _faust_app(settings, registry)
    store = RedisFeatureStore.from_url(
        settings.redis_url, Keys(settings.key_prefix),
        dedup_horizon_days=settings.dedup_horizon_days, retention_days=settings.retention_days,
        halflife_days=HALFLIFE_DAYS, history=settings.customer_history,
    )
    engine = Engine(settings, store, build_segmenter(settings), FaustPublisher(app), Metrics(registry))
    inputs = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="naive")
    async def naive(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            m = event.message
            await engine.process([InMessage(m.topic, m.partition, m.offset, m.key, m.value,
                                            m.timestamp)])

    return app


SUBJECTS: dict[str, Callable[[Settings], faust.App]] = {"bare": bare_app, "naive": naive_app}


def main(argv: list[str]) -> int:
    from streamseg.cli import execute

    if len(argv) != 1 or argv[0] not in SUBJECTS:
        print(f"usage: python -m streamseg.bench.subjects {{{'|'.join(SUBJECTS)}}}", file=sys.stderr)
        return 2
    settings = Settings()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    execute(SUBJECTS[argv[0]](settings), settings, loop)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
