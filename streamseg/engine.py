"""The hot path: one batch of input messages in, features, segments and outputs out.

The engine knows nothing of Faust: it takes plain :class:`InMessage` values and
talks to a :class:`~streamseg.features.store.FeatureStore` and a
:class:`Publisher`, so the same code runs under the Faust agent, in benchmarks
and in tests. Per batch it makes one Redis round trip to apply the events, one
Kafka publish (awaited) and, if memberships changed, one more Redis round trip;
only then does the caller acknowledge the batch's offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from itertools import repeat
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from streamseg.errors import StoreUnavailable
from streamseg.events.decode import Rejection, decode_message
from streamseg.events.models import Event, iso
from streamseg.features.registry import MODEL_FEATURES, derive, model_input
from streamseg.features.store import CustomerUpdate, FeatureStore, Membership
from streamseg.metrics import Metrics
from streamseg.publish.records import DeadLetter, SegmentUpdate, now_iso
from streamseg.segmenting.base import Segmenter
from streamseg.segmenting.naming import name_segments
from streamseg.segmenting.river_kmeans import RiverKMeansSegmenter
from streamseg.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InMessage:
    """One consumed Kafka message, as the engine needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # seconds since the epoch (Kafka record timestamp)


OutRecord = tuple[str, bytes | None, bytes]  # topic, key, value


class Publisher(Protocol):
    """Sends records to Kafka and returns once the broker has them all."""

    async def publish(self, records: Sequence[OutRecord]) -> None: ...


@dataclass(slots=True)
class BatchReport:
    processed: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: int = 0
    changes: list[SegmentUpdate] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A decoded batch, waiting for :meth:`Engine.process`."""

    messages: Sequence[InMessage]
    events: list[Event]
    origin: list[tuple[InMessage, int | None]]  # per event: its message, index in an envelope
    dead: list[DeadLetter]
    decode_seconds: float


def build_segmenter(settings: Settings) -> Segmenter:
    return RiverKMeansSegmenter(
        MODEL_FEATURES, n_segments=settings.n_segments, halflife=settings.kmeans_halflife,
        warmup=settings.model_warmup, seed=settings.seed,
    )


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        segmenter: Segmenter,
        publisher: Publisher,
        metrics: Metrics,
        *,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.segmenter = segmenter
        self.publisher = publisher
        self.metrics = metrics
        self.wall_ms = wall_ms
        self.kinds = {settings.topic_clickstream: "click", settings.topic_transactions: "transaction"}
        self.clock_ms = 0.0  # event-time watermark: newest event time applied
        self.names: dict[int, str] = {}
        self._named_version = 0
        self._pending: dict[str, tuple[dict[str, float], int, int | None]] = {}

    # -- the batch ----------------------------------------------------------
    def prepare(self, messages: Sequence[InMessage]) -> Prepared:
        """Decode a batch: CPU only, no I/O and no state, so a caller may run it
        while the previous batch waits on Redis and Kafka (see streamseg.ingest)."""
        started = time.perf_counter()
        dead: list[DeadLetter] = []
        events, origin = self._decode(messages, dead)
        return Prepared(messages, events, origin, dead, time.perf_counter() - started)

    async def process(self, batch: Sequence[InMessage] | Prepared) -> BatchReport:
        """Apply a batch (raw or :meth:`prepare`-d): features, segments, outputs."""
        p = batch if isinstance(batch, Prepared) else self.prepare(batch)
        started = time.perf_counter() - p.decode_seconds
        report = BatchReport()
        messages, events, origin, dead = p.messages, p.events, p.origin, p.dead
        updates = await self._retry(lambda: self.store.apply(events), "applying events")
        applied_ts = self._account(events, origin, updates, dead, report)
        changes = self._segment(updates, applied_ts)
        records: list[OutRecord] = [(self.settings.topic_dlq, d.customer_id.encode() if d.customer_id
                                     else None, d.to_bytes()) for d in dead]
        records += [(self.settings.topic_segment_updates, c.customer_id.encode(), c.to_bytes())
                    for c in changes]
        if records:
            await self._retry(lambda: self.publisher.publish(records), "publishing")
        if changes:
            members = [Membership(c.customer_id, c.segment_id, c.previous_segment_id, c.distance,
                                  c.model_version, c.segment_name) for c in changes]
            await self._retry(lambda: self.store.write_memberships(members), "writing memberships")
        self._observe(messages, dead, changes, started)
        report.dead_letters = len(dead)
        report.changes = changes
        return report

    # -- steps ------------------------------------------------------------------
    def _decode(
        self, messages: Sequence[InMessage], dead: list[DeadLetter]
    ) -> tuple[list[Event], list[tuple[InMessage, int | None]]]:
        events: list[Event] = []
        origin: list[tuple[InMessage, int | None]] = []
        now = int(self.wall_ms())
        skew = int(self.settings.max_future_skew_s * 1000)
        max_bytes = self.settings.max_message_bytes
        for msg in messages:  # per message: keep the loop lean
            kind = self.kinds.get(msg.topic)
            if kind is None:
                dead.append(_dead(msg, Rejection("unknown_topic", f"no event kind for {msg.topic}")))
                continue
            out = decode_message(msg.value, kind,  # type: ignore[arg-type]
                                 max_bytes=max_bytes, now_ms=now, max_future_ms=skew)
            if out.rejects:
                dead.extend(_dead(msg, r) for r in out.rejects)
            events += out.events
            origin.extend(zip(repeat(msg), out.indices))
        return events, origin

    def _account(
        self, events: list[Event], origin: list[tuple[InMessage, int | None]],
        updates: dict[str, CustomerUpdate], dead: list[DeadLetter], report: BatchReport,
    ) -> dict[str, int]:
        """Count outcomes, dead-letter late events; return newest applied ts per customer."""
        cursor = dict.fromkeys(updates, 0)
        applied_ts: dict[str, int] = {}
        outcomes: Counter[tuple[str, str]] = Counter()  # one metric update per label set
        for ev, (msg, index) in zip(events, origin, strict=True):
            upd = updates[ev.customer_id]
            status = upd.statuses[cursor[ev.customer_id]]
            cursor[ev.customer_id] += 1
            if status == "applied":
                report.processed += 1
                applied_ts[ev.customer_id] = max(applied_ts.get(ev.customer_id, 0), ev.ts_ms)
                outcomes[msg.topic, "processed"] += 1
            elif status == "duplicate":
                report.duplicates += 1
                outcomes[msg.topic, "duplicate"] += 1
            else:
                report.late += 1
                dead.append(_dead(msg, Rejection(
                    "late_event", "event is older than the customer's newest event by more than "
                    f"the dedup horizon ({self.settings.dedup_horizon_days:g} days)",
                    index, ev.customer_id)))
        for (topic, outcome), n in outcomes.items():
            self.metrics.events.labels(topic, outcome).inc(n)
        if applied_ts:
            self.clock_ms = max(self.clock_ms, max(applied_ts.values()))
        return applied_ts

    def _now_ms(self) -> float:
        if self.settings.clock == "wall" or self.clock_ms == 0.0:
            return self.wall_ms()
        return self.clock_ms

    def _segment(self, updates: dict[str, CustomerUpdate], applied_ts: dict[str, int]) -> list[SegmentUpdate]:
        now = self._now_ms()
        rows: list[tuple[str, dict[str, float], int, int | None]] = []
        was_ready = self.segmenter.ready
        for cid, upd in updates.items():
            x = model_input(derive(upd.state, now))
            if upd.changed:
                self.segmenter.learn(x)
            event_ts = applied_ts.get(cid) or int(float(upd.state.get("last_ts", now)))
            prev = upd.state.get("seg")
            rows.append((cid, x, event_ts, int(prev) if isinstance(prev, float) else None))
        if not self.segmenter.ready:
            for cid, x, ts, prev in rows:
                self._pending[cid] = (x, ts, prev)
            return []
        if not was_ready and self._pending:  # warm-up just ended: assign everyone we held back
            seen = {r[0] for r in rows}
            rows += [(cid, x, ts, prev) for cid, (x, ts, prev) in self._pending.items() if cid not in seen]
            self._pending.clear()
        self._refresh_names()
        assignments = self.segmenter.assign_many([r[1] for r in rows])
        processed = now_iso()
        version = self.segmenter.version
        out = []
        for (cid, _, ts, prev), a in zip(rows, assignments, strict=True):
            if prev == a.segment_id:
                continue
            out.append(SegmentUpdate(
                customer_id=cid, segment_id=a.segment_id, segment_name=self.names[a.segment_id],
                previous_segment_id=prev, distance=a.distance, model_version=version,
                event_ts=iso(ts), processed_ts=processed))
        return out

    def _refresh_names(self) -> None:
        if self._named_version != self.segmenter.version:
            self.names = name_segments(self.segmenter.centers())
            self._named_version = self.segmenter.version
            self.metrics.model_version.set(self.segmenter.version)

    def _observe(self, messages: Sequence[InMessage], dead: list[DeadLetter],
                 changes: list[SegmentUpdate], started: float) -> None:
        m = self.metrics
        for d in dead:
            m.dead_letters.labels(d.reason).inc()
            m.events.labels(d.source_topic, "dead_letter" if d.reason != "late_event" else "late").inc()
        for c in changes:
            prev = "none" if c.previous_segment_id is None else str(c.previous_segment_id)
            m.membership_changes.labels(prev, str(c.segment_id)).inc()
        now_s = time.time()
        for msg in messages:
            if msg.timestamp:
                m.latency.observe(max(0.0, now_s - msg.timestamp))
        m.batch_duration.observe(time.perf_counter() - started)
        m.batch_size.observe(len(messages))

    async def _retry(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """Retry outages with capped backoff: never drop a batch, never ack it early."""
        delay = 0.1
        while True:
            try:
                return await op()
            except (TimeoutError, StoreUnavailable, ConnectionError, OSError) as exc:
                self.metrics.store_retries.inc()
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            except Exception as exc:  # Kafka errors from the producer
                if not _is_transient(exc):
                    raise
                log.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


def _is_transient(exc: Exception) -> bool:
    try:
        from aiokafka.errors import KafkaError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, KafkaError)


def _dead(msg: InMessage, r: Rejection) -> DeadLetter:
    return DeadLetter.build(
        reason=r.reason, detail=r.detail, topic=msg.topic, partition=msg.partition,
        offset=msg.offset, key=msg.key, original=msg.value, index=r.index,
        customer_id=r.customer_id,
    )
