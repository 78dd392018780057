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
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

import numpy as np
import orjson

from streamseg.clock import EngineClock
from streamseg.drift import DriftConfig, DriftMonitor, DriftReport
from streamseg.events.decode import Rejection, decode_message
from streamseg.events.models import Event, iso
from streamseg.features.registry import DAY_MS, MODEL_FEATURES, derive, model_input
from streamseg.features.store import CustomerUpdate, FeatureStore, Membership
from streamseg.kafka_security import is_access_error
from streamseg.metrics import Metrics
from streamseg.publish.records import (
    CatalogEntry,
    DeadLetter,
    SegmentProfile,
    SegmentUpdate,
    now_iso,
)
from streamseg.retry import Retrier
from streamseg.segmenting import explain, factory
from streamseg.segmenting.base import Segmenter
from streamseg.segmenting.model import Lifecycle, LocalSummary, SegmentModel, merge
from streamseg.segmenting.naming import name_segments
from streamseg.segmenting.offload import ChildSample, LocalSample, SampleProcess, current_sample
from streamseg.settings import Settings

#: a customer sample for the leader's re-fit and profiles (see streamseg.segmenting.offload)
CustomerSample = ChildSample | LocalSample
log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class InMessage:
    """One consumed Kafka message, as the engine needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # seconds since the epoch (Kafka record timestamp)


OutRecord = tuple[str, bytes | None, bytes | None]  # topic, key, value (None = tombstone)


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


@dataclass(slots=True)
class _Row:
    """One customer to (re)assign in this batch."""

    cid: str
    x: dict[str, float]  # model input
    feats: dict[str, float]  # every feature, original units
    ts: int  # newest event time, ms
    prev: int | None  # current segment
    #: the batch held a redelivered event: publish the segment even if unchanged (see _segment)
    again: bool = False


def build_segmenter(settings: Settings) -> Segmenter:
    return factory.from_settings(settings, MODEL_FEATURES)


def restore_segmenter(settings: Settings, snapshot: dict[str, Any]) -> Segmenter:
    """A clusterer from its JSON snapshot (data only, never pickle).

    A snapshot of another clusterer than ``STREAMSEG_CLUSTERER`` names is refused
    (ValueError: the caller starts cold with the configured one).
    """
    if snapshot.get("kind") != settings.clusterer:
        raise ValueError(f"snapshot is of clusterer {snapshot.get('kind')!r}, "
                         f"settings ask for {settings.clusterer!r}")
    return factory.restore(snapshot)


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
        standalone: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.segmenter = segmenter
        self.publisher = publisher
        self.metrics = metrics
        self.retry = Retrier(metrics)  # Redis and Kafka outages: back off, never drop a batch
        self.wall_ms = wall_ms
        self.kinds = {settings.topic_clickstream: "click", settings.topic_transactions: "transaction"}
        self.clock = EngineClock(settings.clock, wall_ms)  # "now": event time, per partition too
        #: where the leader's samples are computed (a worker sets a child process); None: threads
        self.sampler: SampleProcess | None = None
        self.standalone = standalone
        self.model: SegmentModel | None = None  # the global model customers are assigned with
        self.profiles: dict[int, SegmentProfile] = {}
        self.local_weights: dict[int, float] = {}
        self._learned_since_sync = 0
        self._pulled_version = 0  # global version the local centres were last aligned to
        self._merged_local: dict[str, int] = {}  # worker -> local version last merged
        self._catalog_out: list[CatalogEntry] = []
        self._pending: dict[str, _Row] = {}
        self._lock = asyncio.Lock()  # batches and timer-driven assignment never interleave
        drift = DriftConfig.from_settings(settings)
        self.drift = DriftMonitor(drift, MODEL_FEATURES)
        metrics.drift.set_thresholds(drift.thresholds)

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
        async with self._lock:
            return await self._process(p)

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch or a held-back assignment runs; erasure takes it too."""
        return self._lock

    def forget(self, customer_id: str) -> None:
        """Drop what this engine holds in memory for a customer being erased (call under lock)."""
        self._pending.pop(customer_id, None)

    async def flush_pending(self, limit: int = 1000) -> int:
        """Assign customers held back before the first model arrived (a timer calls this).

        Those held in this worker's memory, then any in the store's held set
        (held by a worker that stopped before it had a model): their events are
        acknowledged, so the set is what makes sure they get a segment.
        """
        async with self._lock:
            if self.model is None:
                return 0
            rows = list(self._pending.values())
            ids = await self.retry(lambda: self.store.held(limit), "reading held customers")
            mine = {r.cid for r in rows}
            others = [c for c in ids if c not in mine]
            if others:
                states = await self.retry(lambda: self.store.states(others), "reading held customers")
                now = self.clock.now_ms()
                for cid, st in zip(others, states, strict=True):
                    if st and not isinstance(st.get("seg"), float):  # expired or assigned: skip
                        feats = derive(st, now)
                        rows.append(_Row(cid, model_input(feats), feats,
                                         int(float(st.get("last_ts", now))), None))
            if not rows and not ids:
                return 0
            changes = self._assign(self.model, rows) if rows else []
            await self._emit([], changes)  # raises (and keeps them held) if it cannot
            await self.retry(lambda: self.store.release(sorted(mine | set(ids))), "releasing customers")
            self._pending.clear()
            self._observe([], [], changes, time.perf_counter())
            log.info("assigned %d customers held back until the first model", len(rows))
            return len(changes)

    async def _process(self, p: Prepared) -> BatchReport:
        started = time.perf_counter() - p.decode_seconds
        report = BatchReport()
        messages, events, origin, dead = p.messages, p.events, p.origin, p.dead
        rejected = len(dead)
        try:
            updates = await self.retry(lambda: self.store.apply(events), "applying events")
            applied_ts = self._account(events, origin, updates, dead, report)
            changes = self._segment(updates, applied_ts)
            if self.model is None and updates:  # before any model: held, in the store too
                await self.retry(lambda: self.store.hold(list(updates)), "holding customers")
            await self._emit(dead, changes)
        except Exception as exc:  # outages are retried inside: this is a bug or a poisoned request
            if is_access_error(exc):  # not the batch's fault: stop unacknowledged (kafka_security)
                raise
            report = BatchReport()
            dead = await self._dead_letter_batch(events, origin, dead[:rejected], exc)
            changes = []
        self._observe(messages, dead, changes, started)
        report.dead_letters = len(dead)
        report.changes = changes
        return report

    async def rescore_stale(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
        """Re-evaluate up to ``limit`` customers not evaluated for ``older_than_ms`` of clock time.

        A silent customer's recency features keep changing without an event to
        re-evaluate them; this brings their segment up to "now" (see
        :mod:`streamseg.rescore`). Re-scored vectors are learned too: silent
        customers send no events, so without this the model would only ever see
        active ones and could not keep a segment for customers who lapsed.
        Returns (customers evaluated, membership changes).
        """
        async with self._lock:
            now = self.clock.now_ms()
            states = await self.retry(lambda: self.store.stale_states(now - older_than_ms, limit),
                                       "reading stale customers")
            changes = self._segment({cid: CustomerUpdate(cid, [], st) for cid, st in states.items()}, {},
                                    learn_all=True)
            await self._emit([], changes)
            await self.retry(lambda: self.store.mark_scored(list(states), now), "marking customers scored")
            self._observe([], [], changes, time.perf_counter())
            return len(states), changes

    async def _dead_letter_batch(
        self, events: list[Event], origin: list[tuple[InMessage, int | None]],
        rejected: list[DeadLetter], exc: Exception,
    ) -> list[DeadLetter]:
        """Send a batch that failed for good to the DLQ, so acknowledging it loses nothing.

        Without this the exception would reach Faust, which acknowledges the
        batch anyway (``take_events`` acks in a ``finally``) and so drops it.
        """
        log.error("a batch of %d events failed; dead-lettering it", len(events), exc_info=exc)
        detail = f"{type(exc).__name__}: {exc}"[:1000]
        dead = rejected + [_dead(msg, Rejection("processing_error", detail, index, ev.customer_id))
                           for ev, (msg, index) in zip(events, origin, strict=True)]
        await self._emit(dead, [])
        return dead

    async def _emit(self, dead: list[DeadLetter], changes: list[SegmentUpdate]) -> None:
        """Publish (awaited), then record memberships: a crash in between republishes."""
        records: list[OutRecord] = [(self.settings.topic_dlq, d.customer_id.encode() if d.customer_id
                                     else None, d.to_bytes()) for d in dead]
        records += [(self.settings.topic_segment_updates, c.customer_id.encode(), c.to_bytes())
                    for c in changes]
        if records:
            await self.retry(lambda: self.publisher.publish(records), "publishing")
        if changes:
            members = [Membership(c.customer_id, c.segment_id, c.previous_segment_id, c.distance,
                                  c.model_version, c.segment_name,
                                  orjson.dumps([r.model_dump() for r in c.reasons])) for c in changes]
            written = await self.retry(lambda: self.store.write_memberships(members),
                                        "writing memberships")
            await self._correct_raced(changes, written.raced)
            erased = written.erased
            if erased:  # erased after their update was applied: the update published above must not
                log.info("%d customer(s) erased mid-batch; tombstoning their updates again", len(erased))
                await self.retry(lambda: self.publisher.publish(  # outlive the erasure's tombstone
                    [(self.settings.topic_segment_updates, cid.encode(), None) for cid in erased]),
                    "publishing tombstones")
        if self._catalog_out:
            entries, self._catalog_out = self._catalog_out, []
            await self.publish_catalog(entries)

    async def _correct_raced(self, changes: list[SegmentUpdate],
                             raced: dict[str, int | None]) -> None:
        """Republish changes whose customer another worker moved since this one read it.

        Two workers can evaluate one customer at once (customers held back until
        the first model; a producer that splits a customer's events across
        workers). The store's sizes stay exact either way; this makes the last
        record per customer say what Redis holds, with the true previous segment.
        """
        fixed = [c.model_copy(update={"previous_segment_id": raced[c.customer_id]})
                 for c in changes
                 if c.customer_id in raced and raced[c.customer_id] != c.segment_id]
        if fixed:
            log.info("%d customer(s) were moved by another worker meanwhile; republishing",
                     len(fixed))
            await self.retry(lambda: self.publisher.publish(
                [(self.settings.topic_segment_updates, c.customer_id.encode(), c.to_bytes())
                 for c in fixed]), "publishing corrected memberships")

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
        newest: dict[tuple[str, int], int] = {}
        for ev, (msg, index) in zip(events, origin, strict=True):
            upd = updates[ev.customer_id]
            status = upd.statuses[cursor[ev.customer_id]]
            cursor[ev.customer_id] += 1
            if status == "applied":
                report.processed += 1
                applied_ts[ev.customer_id] = max(applied_ts.get(ev.customer_id, 0), ev.ts_ms)
                part = (msg.topic, msg.partition)
                newest[part] = max(newest.get(part, 0), ev.ts_ms)
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
        self.clock.advance(newest)
        return applied_ts

    def _segment(self, updates: dict[str, CustomerUpdate], applied_ts: dict[str, int], *,
                 learn_all: bool = False) -> list[SegmentUpdate]:
        """Learn from the batch's customers, assign them; return first assignments and changes.

        ``learn_all``: learn every customer given, not only those with applied
        events (the re-scoring sweep: their features changed with time alone).
        A customer whose batch held a redelivered event (status "duplicate") is
        republished even if its segment did not change: a worker that died
        between publishing and writing the membership left a record Redis
        does not know about, and only a republish makes the latest record agree
        with Redis again (at-least-once, like any redelivered input's output).
        """
        now = self.clock.now_ms()
        rows: list[_Row] = []
        learned: list[dict[str, float]] = []
        for cid, upd in updates.items():
            feats = derive(upd.state, now)
            x = model_input(feats)
            if upd.changed or learn_all:
                self.segmenter.learn(x)
                learned.append(x)
            event_ts = applied_ts.get(cid) or int(float(upd.state.get("last_ts", now)))
            prev = upd.state.get("seg")
            rows.append(_Row(cid, x, feats, event_ts, int(prev) if isinstance(prev, float) else None,
                             "duplicate" in upd.statuses))
        self._count_local(learned)
        if self.standalone:
            self._sync_standalone()
        if self.model is None:
            for r in rows:
                self._hold(r)
            return []
        if self._pending:  # the first model arrived: assign everyone we held back
            for r in rows:
                self._hold(r)
            rows = list(self._pending.values())
            self._pending.clear()
        return self._assign(self.model, rows)

    def _hold(self, row: _Row) -> None:
        """Keep a customer's newest row until there is a model; a redelivery mark sticks."""
        held = self._pending.get(row.cid)
        row.again = row.again or (held is not None and held.again)
        self._pending[row.cid] = row

    def _assign(self, model: SegmentModel, rows: list[_Row]) -> list[SegmentUpdate]:
        ids, dists, z = model.assign([r.x for r in rows], [r.prev for r in rows],
                                     self.settings.segment_margin)
        self.drift.observe([r.ts for r in rows], [r.x for r in rows], ids, dists,
                           [r.prev for r in rows], model_version=model.version)
        processed = now_iso()
        out = []
        for n, (r, sid) in enumerate(zip(rows, ids, strict=True)):
            if r.prev == sid and not r.again:
                continue
            why = explain.reasons(
                model.features, z[n], r.feats,
                None if r.prev is None else model.center_of(r.prev),
                model.centers[model.ids.index(sid)],
                None if r.prev is None else self.segment_means(model, r.prev),
                self.segment_means(model, sid) or {})
            out.append(SegmentUpdate(
                customer_id=r.cid, segment_id=sid, segment_name=self.name_of(sid),
                previous_segment_id=r.prev, distance=float(dists[n]), model_version=model.version,
                event_ts=iso(r.ts), processed_ts=processed, reasons=why))
        return out

    def drift_reports(self) -> list[DriftReport]:
        """Close the drift windows the engine's clock has passed (called from a timer)."""
        if self.model is None:
            return []
        reports = self.drift.close(self.clock.drift_ms(), self.model.centers_by_id(),
                                   self.model.version, self.model.names, rescore=self.model.nearest)
        for r in reports:
            self.metrics.drift.record(r)
        return reports

    # -- the model ------------------------------------------------------------------
    def name_of(self, segment_id: int) -> str:
        return self.model.names.get(segment_id, f"Segment {segment_id}") if self.model else \
            f"Segment {segment_id}"

    def segment_means(self, model: SegmentModel, segment_id: int) -> dict[str, float] | None:
        """A segment's feature means in original units: its profile, else its centre."""
        prof = self.profiles.get(segment_id)
        if prof is not None and prof.means:  # an empty segment has no means yet
            return prof.means
        raw = model.raw_center(segment_id)
        return None if raw is None else explain.original_units(model.features, raw)

    def _count_local(self, learned: list[dict[str, float]]) -> None:
        """Members per local centre (the weights the leader merges centres by)."""
        if self.model is not None and self._pulled_version == 0 and self.segmenter.ready:
            self._pull_local(self.model)  # warm-up just ended under an existing global model
        if learned and self.segmenter.ready:
            self._learned_since_sync += len(learned)
            for a in self.segmenter.assign_many(learned):
                self.local_weights[a.segment_id] = self.local_weights.get(a.segment_id, 0.0) + 1.0

    def local_summary(self, worker: str) -> LocalSummary | None:
        """This worker's clusterer as data; halves the member counts (recent ones weigh more)."""
        if not self.segmenter.ready:
            return None
        centers = self.segmenter.centers()
        order = sorted(centers)
        feats = list(MODEL_FEATURES)
        mean, var, n = self.segmenter.scaler_stats()
        summary = LocalSummary(
            worker=worker, features=feats, mean=np.array([mean[f] for f in feats]),
            var=np.array([var[f] for f in feats]), n=n,
            centers=np.array([[centers[i][f] for f in feats] for i in order]).reshape(len(order), len(feats)),
            weights=np.array([max(self.local_weights.get(i, 0.0), 1.0) for i in order]),
            ts=self.wall_ms() / 1000.0, snapshot=self.segmenter.snapshot(),
            base_version=self._pulled_version, local_version=self.segmenter.version)
        self.local_weights = {k: v / 2 for k, v in self.local_weights.items()}
        self._learned_since_sync = 0
        return summary

    def propose(self, summaries: Sequence[LocalSummary]) -> tuple[SegmentModel, list[Lifecycle]] | None:
        """Leader: merge workers' summaries into the next global model (None: nothing new).

        Only :meth:`mergeable` summaries count (a summary from before a refit
        would undo it).
        """
        summaries = self.mergeable(summaries)
        if not summaries:
            return None
        self.merged(summaries)
        k = max(len(s.centers) for s in summaries)
        mean, var, centers, weights = merge(summaries, k, self.model, seed=self.settings.seed)
        if self.model is None:
            nxt = SegmentModel.first(summaries[0].features, mean, var, centers, weights)
            events = [Lifecycle(sid, "born") for sid in nxt.ids]
        else:
            nxt, events = self.model.evolve(mean, var, centers, weights,
                                            max_move=self.settings.identity_max_move)
            if nxt is self.model:
                return None
        old = self.model.names if self.model else {}
        nxt.names = {**old, **name_segments(nxt.centers_by_id(), previous=old)}  # retired keep theirs
        return nxt, events

    def mergeable(self, summaries: Sequence[LocalSummary]) -> list[LocalSummary]:
        """The summaries worth merging into the next version.

        Summaries aligned with the current global model (their clusterer took its
        centres) when there are any; else those of clusterers that cannot align
        (density-based ones), but only once per local version, so an unchanged
        local model does not undo the leader's refit again and again.
        """
        if self.model is None:
            return list(summaries)
        aligned = [s for s in summaries if s.base_version >= self.model.version]
        if aligned:
            return aligned
        out = [s for s in summaries if s.base_version == 0
               and self._merged_local.get(s.worker) != s.local_version]
        return out

    def merged(self, summaries: Sequence[LocalSummary]) -> None:
        """Remember which local versions went into the global model."""
        for s in summaries:
            self._merged_local[s.worker] = s.local_version

    def adopt(self, model: SegmentModel) -> bool:
        """Assign with ``model`` from now on, unless we already have a newer one."""
        if self.model is not None and model.version <= self.model.version:
            return False
        self.model = model
        self.metrics.model_version.set(model.version)
        self._pull_local(model)
        return True

    def _pull_local(self, model: SegmentModel) -> None:
        """Local learning continues from the global centres (clusterers that allow it).

        Keeps every worker's centres aligned with the shared model, so the next
        merge averages like with like.
        """
        set_centers = getattr(self.segmenter, "set_centers", None)
        if set_centers is None or not self.segmenter.ready:
            return
        mean, var, _ = self.segmenter.scaler_stats()
        local = model.rescaled(np.array([mean[f] for f in model.features]),
                               np.array([var[f] for f in model.features]))
        set_centers({i: dict(zip(model.features, map(float, c), strict=True))
                     for i, c in enumerate(local)})
        self.local_weights = dict(enumerate(map(float, model.weights)))
        self._pulled_version = model.version

    async def sample_customers(self) -> CustomerSample:
        """Up to ``profile_sample`` customers' states with their derived features.

        Customers silent for longer than ``retention_days`` in the engine's clock
        are left out (on a replay, Redis' wall-clock TTL has not removed them yet).

        Shared by the leader's re-fit and the profiles, so one refresh reads and
        derives each customer once. Deriving a 20k sample costs ~0.3 s of CPU:
        with a :attr:`sampler` (the worker's) the sample is read, derived and
        computed on in a child process (see :mod:`streamseg.segmenting.offload`);
        without one, in a thread, the read chunked so batches go on meanwhile.
        """
        now = self.clock.now_ms()
        # retention in the engine's clock: Redis expires customers in wall time, which on a
        # replay (event clock) keeps customers silent for longer than the retention in view
        cutoff = now - self.settings.retention_days * DAY_MS
        if self.sampler is not None:
            return await self.sampler.sample(self.settings.profile_sample, now, cutoff)
        states = await self.store.sample_states(self.settings.profile_sample)
        return LocalSample(*await asyncio.to_thread(current_sample, states, now, cutoff))

    @contextlib.asynccontextmanager
    async def _own_sample(self) -> AsyncIterator[CustomerSample]:
        """A sample read for one call and freed after it, not held until the next refresh."""
        sample = await self.sample_customers()
        try:
            yield sample
        finally:
            await sample.release()

    async def refine(self, sample: CustomerSample | None = None) -> tuple[SegmentModel, list[Lifecycle]] | None:
        """Leader: re-fit the global centres on a sample of current customers.

        The rows and the k-means re-fit are built off the event loop (where the sample is).
        """
        model = self.model
        if model is None:
            return None
        if sample is None:
            async with self._own_sample() as own:
                return await self.refine(own)
        if len(sample) < 2 * len(model.ids):
            return None
        centers, weights = await sample.fit(model, self.settings.seed)
        if self.model is not model:
            return None  # a newer version arrived meanwhile; re-fit it next time
        nxt, events = model.evolve(model.mean, model.var, centers, weights,
                                   max_move=self.settings.identity_max_move)
        if nxt is model:
            return None
        nxt.names = {**model.names, **name_segments(nxt.centers_by_id(), previous=model.names)}
        return nxt, events

    def catalog(self, model: SegmentModel, events: Sequence[Lifecycle]) -> list[CatalogEntry]:
        """Catalog entries for a model version: every live segment plus what ended."""
        by_id = {e.segment_id: e for e in events}
        ts = now_iso()
        out = []
        for sid in model.ids:
            e = by_id.get(sid)
            prof = self.profiles.get(sid)
            if prof is not None:
                prof = prof.model_copy(update={"name": self.name_of(sid), "model_version": model.version})
            out.append(CatalogEntry(
                segment_id=sid, status=e.status if e else "active",  # type: ignore[arg-type]
                model_version=model.version, name=self.name_of(sid), profile=prof,
                related=list(e.related) if e else [], updated_ts=ts))
        for e in events:
            if e.status in ("merged", "retired"):
                out.append(CatalogEntry(
                    segment_id=e.segment_id, status=e.status,  # type: ignore[arg-type]
                    model_version=model.version,
                    name=self.name_of(e.segment_id),
                    profile=None, related=list(e.related), updated_ts=ts))
        return out

    async def publish_catalog(self, entries: Sequence[CatalogEntry]) -> None:
        """Catalog entries to the compacted segments topic, then to Redis (for the API)."""
        if not entries:
            return
        records: list[OutRecord] = [(self.settings.topic_segments, str(e.segment_id).encode(),
                                     e.to_bytes()) for e in entries]
        await self.retry(lambda: self.publisher.publish(records), "publishing the catalog")
        await self.retry(lambda: self.store.write_catalog({e.segment_id: e.to_bytes() for e in entries}),
                          "writing the catalog")

    async def refresh_profiles(self, sample: CustomerSample | None = None) -> list[CatalogEntry]:
        """Recompute profiles from a sample of customers; the catalog entries to republish."""
        if self.model is None:
            return []
        if sample is None:
            async with self._own_sample() as own:
                return await self.refresh_profiles(own)
        sizes = await self.store.segment_sizes()
        model = self.model
        live = {sid: self.name_of(sid) for sid in model.ids}
        # a 20k sample takes ~0.1 s of list building and numpy: off the loop, where the sample is
        profiles = await sample.profiles(live, sizes, model.version)
        if not profiles:  # no member in the sample (before the first assignments): keep what was
            return []
        self.profiles = profiles
        return self.catalog(model, [])

    def _sync_standalone(self) -> None:
        """No Faust leader (in-process use): this engine is its own leader."""
        if not self.segmenter.ready or (
                self.model is not None and self._learned_since_sync < self.settings.model_sync_events):
            return
        summary = self.local_summary("local")
        proposal = self.propose([summary]) if summary else None
        if proposal and self.adopt(proposal[0]):
            self._catalog_out += self.catalog(*proposal)

    def _observe(self, messages: Sequence[InMessage], dead: list[DeadLetter],
                 changes: list[SegmentUpdate], started: float) -> None:
        m = self.metrics
        for d in dead:
            m.dead_letters.labels(d.reason).inc()
            m.events.labels(d.source_topic, "dead_letter" if d.reason != "late_event" else "late").inc()
        for c in changes:
            if c.previous_segment_id == c.segment_id:
                continue  # a republish after redelivery, not a change
            prev = "none" if c.previous_segment_id is None else str(c.previous_segment_id)
            m.membership_changes.labels(prev, str(c.segment_id)).inc()
        now_s = time.time()
        for msg in messages:
            if msg.timestamp:
                m.latency.observe(max(0.0, now_s - msg.timestamp))
        m.batch_duration.observe(time.perf_counter() - started)
        m.batch_size.observe(len(messages))


def _dead(msg: InMessage, r: Rejection) -> DeadLetter:
    return DeadLetter.build(
        reason=r.reason, detail=r.detail, topic=msg.topic, partition=msg.partition,
        offset=msg.offset, key=msg.key, original=msg.value, index=r.index,
        customer_id=r.customer_id,
    )
