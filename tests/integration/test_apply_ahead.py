"""A batch applied ahead of its turn (``Engine.apply_ahead``, what a worker does under load)
ends exactly as the same batches processed one by one. Real Valkey, engines in process.

The worker sends the next batch's events to the store while the batch before it is
segmented, published and recorded. These tests hold a batch at its publish, send the
next one ahead then, and compare everything the engine published and recorded with a
second engine that processed the same batches one at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streamseg.bench.load import Pool, Timeline, events
from streamseg.engine import Engine, InMessage, OutRecord, Prepared, build_segmenter
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.settings import Settings

from .engine_support import store_for

pytestmark = pytest.mark.integration

BATCH = 400  # messages per batch: a customer's events fall in several consecutive batches
BATCHES = 12


class Gate:
    """A publisher that records, and holds the next publish once ``hold`` is set, until the
    test lets it go."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.entered = asyncio.Event()
        self.go = asyncio.Event()
        self.hold = False

    async def publish(self, records: Sequence[OutRecord]) -> None:
        if self.hold:  # the batch's first publish (a race's correction is a second)
            self.hold = False
            self.entered.set()
            await self.go.wait()
            self.go.clear()
        self.records += records


def stream(settings: Settings) -> list[list[InMessage]]:
    """The bench's persona pool with its simulated times, in batches."""
    pool = Pool.simulate(250, seed=11)
    it = events(pool, timeline=Timeline.of(pool, settings.earliest_event_ms))
    out = []
    for b in range(BATCHES):
        batch = []
        for i in range(BATCH):
            tx, cid, value = next(it)
            batch.append(InMessage(settings.topic("transactions" if tx else "clickstream"), 0,
                                   b * BATCH + i, cid, value))
        out.append(batch)
    return out


def engine_for(settings: Settings, prefix: str, publisher: Any) -> tuple[Engine, RedisFeatureStore]:
    cfg = settings.replace(key_prefix=prefix)
    store = store_for(cfg)
    return Engine(cfg, store, build_segmenter(cfg), publisher, Metrics(CollectorRegistry())), store


async def ahead_of(engine: Engine, gate: Gate, current: Prepared, nxt: Prepared) -> asyncio.Task[Any]:
    """Process ``current``, and while it is held at its publish send ``nxt`` ahead."""
    gate.hold, gate.entered = True, asyncio.Event()
    task = asyncio.ensure_future(engine.process(current))
    await asyncio.wait_for(gate.entered.wait(), 60)
    assert engine.apply_ahead(nxt)
    assert not engine.apply_ahead(nxt)  # one batch ahead at a time
    gate.go.set()
    return task


async def ended(store: RedisFeatureStore, cids: list[str]) -> dict[str, dict[str, Any]]:
    """Every customer's stored state, its membership included."""
    return dict(zip(cids, await store.states(cids), strict=True))


def features(state: dict[str, Any]) -> dict[str, Any]:
    """A stored state without its membership (``seg``, ``seg_dist``, ...)."""
    return {k: v for k, v in state.items() if not k.startswith("seg")}


def updates(settings: Settings, records: list[OutRecord]) -> list[tuple[bytes | None, dict[str, Any] | None]]:
    """The segment updates published, in order, each as its record says (but when it was sent)."""
    out = []
    for t, k, v in records:
        if t == settings.topic_segment_updates:
            body = None if v is None else orjson.loads(v)
            if body is not None:
                del body["processed_ts"]  # the wall clock at publishing
            out.append((k, body))
    return out


async def test_batches_applied_ahead__publish_and_record_what_one_by_one_does(settings: Settings) -> None:
    batches = stream(settings)
    cids = sorted({m.key.decode() for b in batches for m in b if m.key})
    one, one_store = engine_for(settings, settings.key_prefix + "one", Gate())
    two_gate = Gate()
    two, two_store = engine_for(settings, settings.key_prefix + "two", two_gate)
    try:
        for b in batches:
            await one.process(b)
        prepared = [two.prepare(b) for b in batches]
        await two.process(prepared[0])  # the first alone; from the second on, each is held at
        task = await ahead_of(two, two_gate, prepared[1], prepared[2])  # its publish while the
        for i in range(2, len(prepared) - 1):  # next one is applied
            await task
            assert two.lock.locked()  # passed straight to batch i: nothing ran in between
            task = await ahead_of(two, two_gate, prepared[i], prepared[i + 1])
        await task
        assert two.lock.locked()
        await two.process(prepared[-1])
        assert not two.lock.locked()
        assert two.applied_ahead == len(batches) - 2

        published_one = updates(settings, one.publisher.records)  # type: ignore[attr-defined]
        published_two = updates(settings, two_gate.records)
        assert len(published_one) > len(cids)  # customers changed segments along the way
        assert published_two == published_one
        assert await ended(two_store, cids) == await ended(one_store, cids)
        assert await two_store.segment_sizes() == await one_store.segment_sizes()
    finally:
        await one_store.close()
        await two_store.close()


async def test_a_batch_applied_ahead_then_dropped__comes_again_as_duplicates_and_ends_the_same(
        settings: Settings) -> None:
    """Partitions moved (or the worker stopped) after the next batch was applied ahead: it is
    not acknowledged, comes again, and its events are then duplicates, applied once."""
    batches = stream(settings)[:3]
    cids = sorted({m.key.decode() for b in batches for m in b if m.key})
    one, one_store = engine_for(settings, settings.key_prefix + "one", Gate())
    gate = Gate()
    two, two_store = engine_for(settings, settings.key_prefix + "two", gate)
    try:
        for b in batches:
            await one.process(b)
        p = [two.prepare(b) for b in batches]
        await two.process(p[0])
        await (await ahead_of(two, gate, p[1], p[2]))
        assert two.lock.locked()
        with pytest.raises(RuntimeError, match="applied ahead"):
            await two.process(p[1])  # not the batch applied ahead
        await two.drop_ahead()
        assert not two.lock.locked()
        await two.drop_ahead()  # nothing left to drop
        again = await two.process(two.prepare(batches[2]))  # delivered again
        assert again.duplicates == len(p[2].events) and again.processed == 0
        # every event applied once: the same features as one by one ...
        first, second = await ended(one_store, cids), await ended(two_store, cids)
        assert {c: features(s) for c, s in second.items()} == {c: features(s) for c, s in first.items()}
        # ... and every customer has a segment, counted once (the duplicates are republished
        # but, as after a crash between apply and publish, not learned: the model may differ)
        assert all(isinstance(s.get("seg"), float) for s in second.values())
        sizes = Counter(int(s["seg"]) for s in second.values())
        assert {k: v for k, v in (await two_store.segment_sizes()).items() if v} == dict(sizes)
    finally:
        await one_store.close()
        await two_store.close()


async def test_apply_ahead__not_while_anything_waits_for_the_lock_nor_outside_a_batch(
        settings: Settings) -> None:
    """A sweep or an erasure waiting for the lock goes between two batches: the next batch is
    then not applied ahead, and the lock is free once the batch ends."""
    batches = stream(settings)[:3]
    gate = Gate()
    engine, store = engine_for(settings, settings.key_prefix, gate)
    order: list[str] = []

    async def sweep() -> None:
        async with engine.lock:
            order.append("sweep")

    try:
        p = [engine.prepare(b) for b in batches]
        assert not engine.apply_ahead(p[1])  # no batch under way
        await engine.process(p[0])
        gate.hold, gate.entered = True, asyncio.Event()
        task = asyncio.ensure_future(engine.process(p[1]))
        await asyncio.wait_for(gate.entered.wait(), 60)
        waiting = asyncio.ensure_future(sweep())
        await asyncio.sleep(0)  # it is queued on the lock now
        assert not engine.apply_ahead(p[2])
        gate.go.set()
        await task
        order.append("batch 1 done")
        await engine.process(p[2])
        order.append("batch 2 done")
        await waiting
        assert order.index("sweep") < order.index("batch 2 done"), order  # between the two
        assert engine.applied_ahead == 0 and not engine.lock.locked()
    finally:
        await store.close()


async def test_apply_ahead__not_while_a_batch_is_cut_at_steps_of_history(settings: Settings) -> None:
    """A batch of history is applied in parts with the leader's work between them: a live
    batch after it (the stream caught up) must not reach the store before its later parts."""
    cfg = settings.replace(history_step_hours=24.0)
    engine, store = engine_for(cfg, cfg.key_prefix, Gate())
    day = 86_400_000
    old = int(time.time() * 1000) - 30 * day  # a month behind the wall clock: history

    def clicks(ts: list[int], first: int) -> list[InMessage]:
        return [InMessage(cfg.topic_clickstream, 0, first + i, f"h{i % 5}".encode(), orjson.dumps(
            {"event_id": f"e{first + i}", "customer_id": f"h{i % 5}", "ts": t, "type": "page_view",
             "session_id": f"s{first + i}"})) for i, t in enumerate(ts)]

    live = engine.prepare(clicks([int(time.time() * 1000)] * 3, 100))
    tried: list[bool] = []

    async def step() -> None:  # the leader's work at a step; the live batch arrives meanwhile
        tried.append(engine.apply_ahead(live))

    engine.history_step = step
    try:
        await engine.process(clicks([old, old + day // 2, old + 2 * day, old + 3 * day], 0))
        assert tried and not any(tried)  # a step ran mid-batch, and nothing went ahead of it
        assert engine.applied_ahead == 0 and not engine.lock.locked()
    finally:
        await store.close()
