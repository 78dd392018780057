"""The Faust application: input batches, output topics, timers; the HTTP API is ``streamseg.api``.

Input records reach the :class:`Engine` a whole fetch at a time through
:mod:`streamseg.ingest` (Faust's own per-message stream path costs more than
the engine does per event); their offsets are acknowledged only after the
engine's Redis writes and Kafka publishes for that batch succeeded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import faust
from prometheus_client import CollectorRegistry

from streamseg.api import register
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
from streamseg.kafka_security import (
    KafkaAccessDenied,
    access_denied,
    error_options,
    faust_credentials,
    principal,
)
from streamseg.metrics import Metrics, watch_gc
from streamseg.rescore import sweep
from streamseg.segmenting.offload import SampleProcess
from streamseg.segmenting.sync import ModelSync
from streamseg.settings import Settings

log = logging.getLogger(__name__)
#: How often consumer lag is refreshed (one ListOffsets request per refresh).
LAG_INTERVAL_S = 2.0
GIL_SWITCH_INTERVAL_S = 0.0005
#: The loop-lag probe's sleep (see ``streamseg_event_loop_lag_seconds``).
LOOP_LAG_PROBE_S = 0.1
#: How often a worker writes its clock and model version to Redis (``Keys.workers``).
WORKER_STATUS_S = 1.0


class AccessGuard:
    """Ends the worker at the first sign that the cluster refuses it, with one error line.

    A wrong password, an untrusted certificate or a missing ACL is no outage:
    every retry meets it again. Left alone, Faust logs a traceback for the
    service it crashes (its leader topic, the consumer group), our timers log a
    warning per tick, and the model-topic task dies. Every place that sees such
    an error hands it here; the first one stops the worker gracefully (SIGTERM
    to itself: Faust's own shutdown, nothing acknowledged that was not
    processed) and ``streamseg worker`` prints it as its last line and exits 1.
    """

    def __init__(self, settings: Settings) -> None:
        self.options = error_options(settings)
        self.who = principal(settings)
        self.denied: KafkaAccessDenied | None = None
        #: how to stop the worker; None (an app not run by ``streamseg worker``): errors go
        #: their usual way
        self.stop: Callable[[], None] | None = None
        self._stopping = False

    def arm(self) -> None:
        """Stop the worker through its SIGTERM handler (Faust's graceful shutdown)."""
        self.stop = lambda: os.kill(os.getpid(), signal.SIGTERM)

    def record(self, exc: BaseException) -> bool:
        """Remember the first refusal; True if ``exc`` is one."""
        denied = access_denied(exc, self.options, who=self.who)
        if denied is not None and self.denied is None:
            self.denied = denied
        return denied is not None

    def stop_for(self, exc: BaseException) -> bool:
        """True, and the worker stopping, if ``exc`` is the cluster refusing us."""
        if self.stop is None or not self.record(exc):
            return False
        if not self._stopping:  # once: other tasks meet the same refusal meanwhile
            self._stopping = True
            log.info("stopping: Kafka refused this worker (%s)", type(exc).__name__)
            self.stop()
        return True


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
    if settings.web_in_thread:
        # the web thread waits for the GIL while a batch computes: hand it over sooner than 5 ms
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    app = faust.App(
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
        cython_optimizations=True,
    )
    store = RedisFeatureStore.from_url(
        settings.redis_url, Keys(settings.key_prefix),
        dedup_horizon_days=settings.dedup_horizon_days, retention_days=settings.retention_days,
        halflife_days=HALFLIFE_DAYS,
    )
    engine = Engine(settings, store, build_segmenter(settings), FaustPublisher(app), metrics,
                    standalone=False)
    if settings.sample_process:
        engine.leader.sampler = SampleProcess(settings.redis_url, settings.key_prefix)
    sync = ModelSync(settings, engine, lambda snap: restore_segmenter(settings, snap))
    access = AccessGuard(settings)
    batch_topic(app, settings.input_topics, _WhenLoaded(engine, sync.loaded),
                batch_max=settings.batch_max, fetch_max_wait_ms=settings.fetch_max_wait_ms,
                on_access_denied=access.stop_for, idempotent=settings.kafka_idempotence)
    register(app, engine, store, settings)

    @app.on_before_shutdown.connect  # type: ignore[misc,arg-type]
    async def stop_sample_process(sender: object, **_: object) -> None:
        if engine.leader.sampler is not None:
            await asyncio.to_thread(engine.leader.sampler.close)

    @app.on_partitions_assigned.connect  # type: ignore[misc,arg-type]
    async def log_assignment(sender: object, assigned: set[faust.types.TP], **_: object) -> None:
        mine = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned if tp.topic in settings.input_topics)
        log.info("input partitions assigned: %s", ", ".join(mine) or "none")

    @app.task
    async def follow_model_topic() -> None:
        try:
            await sync.run()
        except Exception as exc:
            if not access.stop_for(exc):
                raise

    @app.task
    async def watch_event_loop() -> None:
        """Loop lag and GC pauses (``streamseg_event_loop_lag_seconds``, ``..._gc_pause_seconds``)."""
        watch_gc(metrics)
        # what exists once the worker runs (modules, Faust, River, the model) lives as long
        # as the process: freezing it keeps it out of every full collection, which scanned
        # it all (50-100 ms pauses every few seconds, straight into the p99 latency)
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LOOP_LAG_PROBE_S)
            metrics.loop_lag.observe(max(0.0, loop.time() - start - LOOP_LAG_PROBE_S))

    @app.timer(settings.model_sync_s)
    async def publish_local_model() -> None:
        await _guard("publishing the local model", sync.publish_local, access)

    @app.timer(settings.model_sync_s, on_leader=True)
    async def merge_models() -> None:
        await _guard("merging models", lambda: engine.leader.lead(sync.locals), access)

    @app.timer(settings.catalog_refresh_s, on_leader=True)
    async def refresh_catalog() -> None:
        await _guard("refreshing the catalog", engine.leader.refresh_catalog, access)

    @app.timer(min(1.0, settings.model_sync_s))
    async def assign_held_back() -> None:
        await _guard("assigning held-back customers", engine.flush_pending, access)

    @app.timer(max(5.0, settings.model_sync_s))
    async def load_profiles() -> None:
        await _guard("loading profiles", sync.load_profiles, access)

    @app.timer(1.0)
    async def refresh_segment_sizes() -> None:
        try:
            sizes = await store.segment_sizes()
        except Exception as exc:  # a Redis outage must not kill the timer
            log.debug("segment sizes unavailable: %s", exc)
            return
        live = engine.assigner.model.ids if engine.assigner.model is not None else []
        metrics.set_segment_sizes(sizes, live, engine.assigner.name_of)

    @app.timer(WORKER_STATUS_S)
    async def share_worker_status() -> None:
        """The engine's clock and model version, for ``streamseg api`` (it has no engine)."""
        model = engine.assigner.model
        try:
            await store.write_worker_status(sync.worker, {
                "clock_ms": engine.clock.clock_ms, "model_version": model.version if model else 0,
                "at_ms": engine.wall_ms()})
        except Exception as exc:  # a Redis outage must not kill the timer
            log.debug("worker status not written: %r", exc)

    @app.timer(settings.rescore_every_s, on_leader=True)
    async def rescore_stale_customers() -> None:
        try:
            await sweep(engine, older_than_days=settings.rescore_after_hours / 24.0,
                        batch=settings.rescore_batch, max_customers=settings.rescore_max)
        except Exception as exc:  # the sweep must not kill the timer; the next tick retries
            if not access.stop_for(exc):
                log.exception("re-scoring sweep failed")

    @app.timer(settings.drift_interval_s)
    async def close_drift_windows() -> None:
        reports = engine.drift_reports()
        if not reports:
            return
        try:
            await engine.publisher.publish(
                [(settings.topic_drift, r.window.encode(), r.to_bytes()) for r in reports])
        except Exception as exc:  # reports are derived data (also in /metrics): log, go on
            if access.stop_for(exc):
                return
            log.warning("could not publish %d drift report(s): %r", len(reports), exc)
        for r in reports:
            if r.alerts:
                log.warning("drift alert (%s window ending %s): %s", r.window, r.window_end,
                            "; ".join(a.detail for a in r.alerts))

    @app.timer(LAG_INTERVAL_S)
    async def refresh_consumer_lag() -> None:
        try:
            lags = await consumer_lag(app, set(settings.input_topics))
        except Exception as exc:  # not assigned yet, or the broker is away
            log.debug("consumer lag unavailable: %r", exc)
            return
        metrics.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            metrics.consumer_lag.labels(topic, str(partition)).set(lag)

    app.streamseg_engine = engine  # type: ignore[attr-defined]
    app.streamseg_sync = sync  # type: ignore[attr-defined]
    app.streamseg_access = access  # type: ignore[attr-defined]
    return app, engine


async def consumer_lag(app: faust.App, topics: set[str]) -> dict[tuple[str, int], int]:
    """End offset - committed offset per assigned input partition (before this worker's
    first commit on a partition: end offset - read position)."""
    consumer = app.consumer
    tps = [tp for tp in consumer.assignment() if tp.topic in topics]
    if not tps:
        return {}
    ends = await consumer.highwaters(*tps)
    committed = app.monitor.tp_committed_offsets
    out = {}
    for tp in tps:
        end = ends.get(tp)
        done = committed.get(tp)
        if done is None:
            done = await consumer.position(tp)
        if end is not None and done is not None:
            out[tp.topic, tp.partition] = max(0, end - done)
    return out


async def _guard(what: str, op: Callable[[], Awaitable[object]],
                 access: AccessGuard | None = None) -> None:
    """Timers must survive outages: log and try again next tick (a refusal stops the worker)."""
    try:
        await op()
    except Exception as exc:
        if access is not None and access.stop_for(exc):
            return
        log.warning("%s failed: %r", what, exc)

