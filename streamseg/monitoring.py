"""What a worker reports about itself: loop lag and GC pauses, segment sizes, consumer lag,
and its clock and model version for ``streamseg api`` (which has no engine)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from streamseg.metrics import Metrics, watch_gc

if TYPE_CHECKING:
    import faust

    from streamseg.engine import Engine
    from streamseg.features.store import RedisFeatureStore
    from streamseg.settings import Settings
    from streamseg.ticks import Ticks


def register(app: faust.App, engine: Engine, store: RedisFeatureStore, worker: str,
             settings: Settings, ticks: Ticks) -> None:
    """Register the worker's self-reporting task and timers on ``app`` (``worker``: its id)."""
    metrics = engine.metrics

    @app.task
    async def watch_event_loop() -> None:
        """Loop lag and GC pauses (``streamseg_event_loop_lag_seconds``, ``..._gc_pause_seconds``)."""
        watch_gc(metrics)
        await probe_loop_lag(metrics, settings.loop_lag_probe_s)

    # every second: an outage would log a line a second, so these log at debug
    @ticks.every(app, settings.segment_sizes_every_s, "reading segment sizes", level=logging.DEBUG)
    async def refresh_segment_sizes() -> None:
        sizes = await store.segment_sizes()
        live = engine.assigner.model.ids if engine.assigner.model is not None else []
        metrics.set_segment_sizes(sizes, live, engine.assigner.name_of)

    @ticks.every(app, settings.worker_status_every_s, "writing the worker status",
                 level=logging.DEBUG)
    async def share_worker_status() -> None:
        model = engine.assigner.model
        await store.write_worker_status(worker, {
            "clock_ms": engine.clock.clock_ms, "model_version": model.version if model else 0,
            "at_ms": engine.wall_ms(), **({} if model else engine.warmup.status())})

    # fails while no partition is assigned yet, or the broker is away
    @ticks.every(app, settings.consumer_lag_every_s, "reading consumer lag", level=logging.DEBUG)
    async def refresh_consumer_lag() -> None:
        lags = await consumer_lag(app, set(settings.input_topics))
        metrics.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            metrics.consumer_lag.labels(topic, str(partition)).set(lag)


async def probe_loop_lag(metrics: Metrics, probe_s: float) -> None:
    """Sleep ``probe_s`` over and over, recording how much later than asked each wake-up came."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(probe_s)
        metrics.loop_lag.observe(max(0.0, loop.time() - start - probe_s))


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
