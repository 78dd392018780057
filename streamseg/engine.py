"""The hot path: one batch of input messages in, features, segments and outputs out.

The engine knows nothing of Faust: it takes plain :class:`InMessage` values and
talks to a :class:`~streamseg.features.store.FeatureStore` and a
:class:`Publisher`, so the same code runs under the Faust agent, in benchmarks
and in tests. Per batch it makes one Redis round trip to apply the events, one
Kafka publish (awaited) and, if memberships changed, one more Redis round trip;
only then does the caller acknowledge the batch's offsets.

One event's path::

    Engine.prepare       decode (events/decode.py) or a dead letter
    Engine._process      store.apply, via Retrier (retry.py); refused for good: the
                         batch's events are dead letters. Once applied, never.
      Intake.account     counts, late events; EngineClock.advance (clock.py)
      _segment           LocalLearner.learn / count (segmenting/local.py)
                         [standalone: Leader.lead_locally (leader/)]
                         no model yet: HeldBack.hold (held.py), store's held set
                         else Assigner.assign (segmenting/assign.py), drift observed
      Emitter.publish    publish updates and dead letters (publish/emitter.py; dead letters
                         carry a bounded prefix, publish/records.py; a record the broker
                         refuses for good is counted lost, never retried for ever)
      Emitter.record     write the published memberships; then Leader.flush_catalog
    _observe             metrics

Every worker follows the model topic (segmenting/sync.py: Assigner.adopt,
LocalLearner.restore); the Faust leader's timers run :class:`~streamseg.leader.Leader`.

A worker applies the next batch ahead (:meth:`Engine.apply_ahead`): its ``store.apply``
runs in Valkey while this batch is segmented, published and recorded, so the worker's
Python and Valkey's Lua overlap instead of taking turns. The lock passes from one batch
to the next without a gap (no sweep or erasure sees a batch applied and not recorded),
and the memberships the batch before recorded are laid over the states the early apply
read (:meth:`Engine._process`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamseg.clock import EngineClock
from streamseg.drift import DriftConfig, DriftMonitor, DriftReport
from streamseg.events.models import Event
from streamseg.features.registry import MODEL_FEATURES, derive, model_input
from streamseg.features.store import CustomerUpdate, FeatureStore
from streamseg.held import HeldBack
from streamseg.intake import InMessage, Intake
from streamseg.kafka_security import is_access_error
from streamseg.leader import Leader
from streamseg.leader.pace import Pace
from streamseg.metrics import Metrics
from streamseg.publish.emitter import Emitter
from streamseg.publish.publisher import OutRecord, Publisher
from streamseg.publish.records import DeadLetter, SegmentUpdate
from streamseg.retry import Retrier
from streamseg.segmenting import factory
from streamseg.segmenting.assign import Assigner, Row
from streamseg.segmenting.base import Segmenter
from streamseg.segmenting.local import LocalLearner
from streamseg.segmenting.warmup import WarmUp
from streamseg.settings import Settings

__all__ = ["BatchReport", "Engine", "InMessage", "OutRecord", "Prepared", "Publisher",
           "build_segmenter", "restore_segmenter"]
log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchReport:
    processed: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: int = 0
    changes: list[SegmentUpdate] = field(default_factory=list)

    def add(self, other: BatchReport) -> None:
        """Count another part of the same batch in."""
        self.processed += other.processed
        self.duplicates += other.duplicates
        self.late += other.late
        self.dead_letters += other.dead_letters
        self.changes += other.changes


@dataclass(frozen=True, slots=True)
class Prepared:
    """A decoded batch, waiting for :meth:`Engine.process`."""

    messages: Sequence[InMessage]
    events: list[Event]
    origin: list[tuple[InMessage, int | None]]  # per event: its message, index in an envelope
    dead: list[DeadLetter]
    decode_seconds: float


@dataclass(slots=True)
class _Ahead:
    """A batch whose events are being applied while the batch before it is still processed."""

    prepared: Prepared
    applied: asyncio.Future[dict[str, CustomerUpdate]]
    #: customer -> (segment, value band) recorded since the apply was sent: the states it read
    #: may hold what was there before
    recorded: dict[str, tuple[int, str | None]] = field(default_factory=dict)


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
    """The batch pipeline: decode, apply to the store, learn and assign, publish, record.

    It composes the parts that each do one job and exposes them: :attr:`clock`
    (event time), :attr:`local` (this worker's clusterer), :attr:`assigner`
    (the global model, names, profiles), :attr:`leader` (merge, refit,
    catalog), :attr:`held` (customers waiting for a first model) and
    :attr:`retry` (outages). ``standalone``: no Faust leader, the engine merges
    its own model every ``model_sync_events`` learned customers.
    """

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
        self.metrics = metrics
        self.retry = Retrier(metrics)  # Redis and Kafka outages: back off, never drop a batch
        self.emitter = Emitter(settings, store, publisher, self.retry, metrics)  # outputs
        self.wall_ms = wall_ms
        self.intake = Intake(settings, metrics, wall_ms)  # messages -> events or dead letters
        self.clock = EngineClock(settings.clock, wall_ms)  # "now": event time, per partition too
        self.standalone = standalone  # no Faust leader: this engine merges its own model
        drift = DriftConfig.from_settings(settings)
        self.drift = DriftMonitor(drift, MODEL_FEATURES)
        metrics.drift.set_thresholds(drift.thresholds)
        self.local = LocalLearner(segmenter, wall_ms)  # this worker's clusterer
        # the global model customers are assigned with; local learning follows each version
        self.assigner = Assigner(settings.segment_margin, metrics, self.drift, on_adopt=self.local.pull)
        self.leader = Leader(settings, store, publisher, self.retry, self.assigner, self.clock,
                             metrics=metrics)
        self.held = HeldBack(store, self.retry)  # customers seen before the first model
        self.warmup = WarmUp.from_settings(settings)  # a small stream's first model (warmup.py)
        self._lock = asyncio.Lock()  # batches and timer-driven assignment never interleave
        # reading history: batches cut at event-time steps, where the leader's work runs
        self.pace = Pace(settings.clock, settings.history_step_hours, wall_ms)
        #: the leader's work at each step of history (a worker sets it; None: never paced)
        self.history_step: Callable[[], Awaitable[None]] | None = None
        metrics.history_pending.set_function(lambda: float(
            self.history_step is not None and self.pace.aside))
        self._in_batch = False  # a batch holds the lock and is being processed
        self._stepping = False  # ... cut at steps of history: its parts are applied one by one
        self._applying = 0  # store.apply calls in flight (the next goes ahead only after them)
        self._ahead: _Ahead | None = None  # the next batch, applied early; it holds the lock
        self._watching: list[_Ahead] = []  # early applies whose batch has not read them yet
        #: batches applied ahead of their turn (a worker under load: most of them)
        self.applied_ahead = 0

    # -- the batch ----------------------------------------------------------
    def prepare(self, messages: Sequence[InMessage]) -> Prepared:
        """Decode a batch: CPU only, no I/O and no state, so a caller may run it
        while the previous batch waits on Redis and Kafka (see streamseg.ingest)."""
        started = time.perf_counter()
        dead: list[DeadLetter] = []
        events, origin = self.intake.decode(messages, dead)
        return Prepared(messages, events, origin, dead, time.perf_counter() - started)

    async def process(self, batch: Sequence[InMessage] | Prepared) -> BatchReport:
        """Apply a batch (raw or :meth:`prepare`-d): features, segments, outputs."""
        p = batch if isinstance(batch, Prepared) else self.prepare(batch)
        ahead = self._ahead
        if ahead is not None:
            if ahead.prepared is not p:
                raise RuntimeError("a batch was applied ahead: process it, or drop_ahead(), first")
            self._ahead = None  # the lock is already held for it (apply_ahead)
        else:
            await self._lock.acquire()
        self._in_batch = True
        try:
            if ahead is not None:
                return await self._process_ahead(ahead)
            if self.history_step is None:
                return await self._process(p)
            return await self._process_paced(p, self.history_step)
        finally:
            self._in_batch = False
            if self._ahead is None:
                self._lock.release()
            # else: the next batch was applied ahead; it takes the lock over (or drop_ahead)

    def apply_ahead(self, p: Prepared) -> bool:
        """Start applying ``p``'s events now, while the batch before it is processed; True when
        it did. :meth:`process` of ``p`` must follow (or :meth:`drop_ahead`).

        Only while a batch holds the lock and no apply is in flight (the store applies
        batches in order), not when anything else waits for the lock (a sweep, an
        erasure, a held-back assignment: they go between the two batches instead), and
        not on a stretch of history whose steps cut this batch or would cut the next
        (:class:`Pace`): a step's work runs between the parts' applies.
        """
        if (self._ahead is not None or not self._in_batch or self._stepping or self._applying
                or not p.events
                or _waited_for(self._lock)
                or (self.history_step is not None and not self.pace.live([ev.ts_ms for ev in p.events]))):
            return False
        ahead = _Ahead(p, asyncio.ensure_future(self._apply(p.events)))
        self._ahead = ahead
        self._watching.append(ahead)
        self.applied_ahead += 1
        self.metrics.applied_ahead.inc()
        return True

    async def drop_ahead(self) -> None:
        """The batch applied ahead will not be processed (its partitions moved, or the worker
        stops): its events stay unacknowledged and come again, and the store's per-event
        idempotency makes them duplicates that republish the customer's segment. Releases the
        lock it held. Nothing to do without one."""
        ahead = self._ahead
        if ahead is None:
            return
        self._ahead = None
        owned = not self._in_batch  # else the batch under way releases the lock when it ends
        ahead.applied.cancel()
        try:
            await asyncio.gather(ahead.applied, return_exceptions=True)
        finally:
            self._unwatch(ahead)
            if owned:
                self._lock.release()

    async def _process_paced(self, p: Prepared, step: Callable[[], Awaitable[None]]) -> BatchReport:
        """A batch cut at the history's event-time steps (:class:`Pace`), the leader's work
        run at each with the clock at the step's time (batches wait: the lock is held).
        Live, one part and no step."""
        with self.pace.applying():
            parts = self.pace.cut([ev.ts_ms for ev in p.events])
            if len(parts) == 1 and parts[0][1] is None:
                return await self._process(p)
            report = BatchReport()
            self._stepping = True  # a later part's events must reach the store before the next batch's
            try:
                for part, due_ms in _split(p, parts):
                    if due_ms is not None:
                        self.clock.reach(due_ms)
                        await step()
                    report.add(await self._process(part))
            finally:
                self._stepping = False
            return report

    async def _process_ahead(self, ahead: _Ahead) -> BatchReport:
        """A batch applied ahead (:meth:`apply_ahead`). It was live when sent; should it have
        turned history meanwhile, its steps run before it is segmented."""
        if self.history_step is None:
            return await self._process(ahead.prepared, ahead)
        with self.pace.applying():
            self._stepping = True
            try:
                for _, due_ms in self.pace.cut([ev.ts_ms for ev in ahead.prepared.events]):
                    if due_ms is not None:
                        self.clock.reach(due_ms)
                        await self.history_step()
            finally:
                self._stepping = False
            return await self._process(ahead.prepared, ahead)

    async def _apply(self, events: list[Event]) -> dict[str, CustomerUpdate]:
        self._applying += 1
        try:
            return await self.retry(lambda: self.store.apply(events), "applying events")
        finally:
            self._applying -= 1

    def _unwatch(self, ahead: _Ahead) -> None:
        if ahead in self._watching:
            self._watching.remove(ahead)

    @property
    def publisher(self) -> Publisher:
        """Where this engine's outputs go (the emitter's publisher)."""
        return self.emitter.publisher

    @publisher.setter
    def publisher(self, publisher: Publisher) -> None:
        self.emitter.publisher = publisher

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch or a held-back assignment runs; erasure takes it too."""
        return self._lock

    def forget(self, customer_id: str) -> None:
        """Drop what this engine holds in memory for a customer being erased (call under lock)."""
        self.held.forget(customer_id)

    async def flush_pending(self, limit: int = 1000) -> int:
        """Assign customers held back before the first model arrived (a timer calls this).

        Before the first model it counts the customers seen and may seed this
        worker's clusterer early instead (:meth:`_warm_up`).
        Those held in this worker's memory, then any in the store's held set
        (held by a worker that stopped before it had a model): their events are
        acknowledged, so the set is what makes sure they get a segment.
        """
        await self._warm_up()
        async with self._lock:
            if self.assigner.model is None:
                return 0
            rows, release = await self.held.gather(limit, self.clock.now_ms())
            if not rows and not release:
                return 0
            changes = self.assigner.assign(rows) if rows else []
            await self._emit([], changes)  # raises (and keeps them held) if it cannot
            await self.held.release(release)
            _observe(self.metrics, [], [], changes, time.perf_counter())
            log.info("assigned %d customers held back until the first model", len(rows))
            return len(changes)

    async def _warm_up(self) -> None:
        """Before the first model: count the customers seen, and seed this worker's clusterer
        early once the warm-up rule says so (:mod:`streamseg.segmenting.warmup`)."""
        if self.assigner.model is not None:
            return
        # one read, outside the lock: an outage fails this tick, not the batches
        self.warmup.customers = await self.store.held_count()  # every worker's customers
        if self.local.ready or not self.warmup.due(self.wall_ms()):
            return
        async with self._lock:  # the clusterer is the batches' too
            if self.assigner.model is None and self.local.end_warmup():
                log.info("first model seeded early: %d distinct customers seen",
                         self.warmup.customers)
                if self.standalone:
                    self.leader.lead_locally(self.local)

    async def _process(self, p: Prepared, ahead: _Ahead | None = None) -> BatchReport:
        """Apply (or take the apply sent ahead), then outputs. An event is applied once or
        dead-lettered, never both: only a batch the store refused goes to the DLQ whole; once
        applied, a failure loses outputs (logged, counted), not events."""
        started = time.perf_counter() - p.decode_seconds
        report = BatchReport()
        events, origin, dead = p.events, p.origin, list(p.dead)
        try:
            if ahead is None:
                updates = await self._apply(events)
            else:
                try:
                    updates = await ahead.applied
                finally:
                    self._unwatch(ahead)
                _recorded_over(updates, ahead.recorded)
        except Exception as exc:  # outages are retried inside: a bug or a poisoned request
            if is_access_error(exc):  # not the batch's fault: stop unacknowledged (kafka_security)
                raise
            dead += self.intake.not_applied(events, origin, exc)
            await self.emitter.publish(dead, [])
            changes: list[SegmentUpdate] = []
        else:
            changes = await self._after_apply(events, origin, updates, dead, report)
        _observe(self.metrics, p.messages, dead, changes, started)
        report.dead_letters = len(dead)
        report.changes = changes
        return report

    async def _after_apply(self, events: list[Event], origin: list[tuple[InMessage, int | None]],
                           updates: dict[str, CustomerUpdate], dead: list[DeadLetter],
                           report: BatchReport) -> list[SegmentUpdate]:
        """Account, segment and emit an applied batch; returns the changes published.

        Nothing here may raise for the batch's content (only a refused credential
        does): the batch is then acknowledged with what could be done, and a
        customer whose change was not recorded is evaluated again at its next event.
        """
        changes: list[SegmentUpdate] = []
        try:
            applied_ts, newest = self.intake.account(events, origin, updates, dead, report)
            self.clock.advance(newest)
            changes = self._segment(updates, applied_ts)
            if self.assigner.model is None and updates:  # before any model: held, in the store too
                self.warmup.begin(self.wall_ms())
                await self.held.persist(updates)
        except Exception as exc:
            if is_access_error(exc):
                raise
            log.error("a batch of %d events was applied, but segmenting it failed; its segment "
                      "updates are lost until those customers' next events", len(events), exc_info=exc)
            self.metrics.outputs_lost.labels("none").inc()
            changes = []
        changes = await self.emitter.publish(dead, changes)
        try:
            await self._record(changes)
        except Exception as exc:
            if is_access_error(exc):
                raise
            log.error("recording %d published membership(s) failed; those customers are "
                      "evaluated again at their next event", len(changes), exc_info=exc)
        return changes

    async def rescore_held(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
        """Re-evaluate up to ``limit`` customers not evaluated for ``older_than_ms`` of clock time;
        the caller holds :attr:`lock` (a step of history, or the live sweep, which takes it per
        batch: :func:`streamseg.rescore.sweep`).

        A silent customer's recency features keep changing without an event to
        re-evaluate them; this brings their segment up to "now" (see
        :mod:`streamseg.rescore`). Re-scored vectors of customers active within
        ``model_active_days`` are learned too: silent customers send no events, so
        without this the model would only ever see active ones and could not keep a
        segment for customers who lapsed. Longer-silent ones are assigned, not learned: a
        base of long-lapsed customers that grows with every cohort would pull the
        centres away from the active customers (docs/model.md).
        Returns (customers evaluated, membership changes).
        """
        now = self.clock.now_ms()
        states = await self.retry(lambda: self.store.stale_states(now - older_than_ms, limit),
                                   "reading stale customers")
        changes = self._segment({cid: CustomerUpdate(cid, [], st) for cid, st in states.items()}, {},
                                learn_all=True)
        await self._emit([], changes)
        await self.retry(lambda: self.store.mark_scored(list(states), now), "marking customers scored")
        _observe(self.metrics, [], [], changes, time.perf_counter())
        return len(states), changes

    async def _emit(self, dead: list[DeadLetter], changes: list[SegmentUpdate]) -> None:
        """Publish (awaited), then record memberships: a crash in between republishes."""
        await self._record(await self.emitter.publish(dead, changes))

    async def _record(self, changes: list[SegmentUpdate]) -> None:
        """Write published memberships (:meth:`Emitter.record`), then catalog versions this
        engine merged itself (standalone)."""
        await self.emitter.record(changes)
        for ahead in self._watching:  # an early apply may have read these customers before
            ahead.recorded.update((c.customer_id, (c.segment_id, c.risk_band)) for c in changes)
        await self.leader.flush_catalog()

    # -- steps ------------------------------------------------------------------
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
        rows: list[Row] = []
        learned: list[dict[str, float]] = []
        value = self.leader.value
        active_days = self.settings.model_active_days
        for cid, upd in updates.items():
            feats = derive(upd.state, now)
            x = model_input(feats)
            # the sweep re-scores every silent customer; only recently active ones teach the model
            if upd.changed or (learn_all and feats["days_since_last_activity"] <= active_days):
                self.local.learn(x)
                learned.append(x)
            event_ts = applied_ts.get(cid) or int(float(upd.state.get("last_ts", now)))
            prev = upd.state.get("seg")
            band = upd.state.get("val_band")
            rows.append(Row(cid, x, feats, event_ts, int(prev) if isinstance(prev, float) else None,
                             "duplicate" in upd.statuses, value.banded(upd.state, now),
                             band if isinstance(band, str) else None))
        self.local.count(learned, self.assigner.model)
        if self.standalone:
            self.leader.lead_locally(self.local)
        if self.assigner.model is None:
            for r in rows:
                self.held.hold(r)
            return []
        # the first model arrived: assign everyone held back too
        return self.assigner.assign(self.held.merge(rows), now)

    def drift_reports(self) -> list[DriftReport]:
        """Close the drift windows the engine's clock has passed, at once."""
        return [r for step in self._drift_steps() for r in step]

    async def drift_reports_paced(self) -> list[DriftReport]:
        """:meth:`drift_reports` for the worker's timer: batches may run between two reports.

        When the clock passes many slot boundaries at once (a replay, the bench's simulated
        days) the reports of one close took up to 370 ms of a slow machine, and every
        event that arrived meanwhile waited for all of them. No lock is held: the batches
        only add rows, and :meth:`DriftMonitor.closing` allows for them.
        """
        reports: list[DriftReport] = []
        for step in self._drift_steps():
            reports += step
            await asyncio.sleep(0)
        return reports

    def _drift_steps(self) -> Iterator[list[DriftReport]]:
        model = self.assigner.model
        if model is None:
            return
        for step in self.drift.closing(self.clock.drift_ms(), model.centers_by_id(), model.version,
                                       model.names, rescore=model.nearest, value=self.leader.value):
            for r in step:
                self.metrics.drift.record(r)
            yield step


def _split(p: Prepared, parts: list[tuple[list[int], float | None]]) -> list[tuple[Prepared, float | None]]:
    """A prepared batch as its :meth:`Pace.cut` parts (each with its step flag); the messages and
    dead letters go with the last part, the decoding time with the first."""
    out = []
    for n, (idx, due) in enumerate(parts):
        last = n == len(parts) - 1
        out.append((Prepared(p.messages if last else [], [p.events[i] for i in idx],
                             [p.origin[i] for i in idx], p.dead if last else [],
                             p.decode_seconds if n == 0 else 0.0), due))
    return out


def _waited_for(lock: asyncio.Lock) -> bool:
    """Is a task waiting to acquire ``lock``? (asyncio keeps its waiters' futures.)"""
    return any(not w.done() for w in getattr(lock, "_waiters", None) or ())


def _recorded_over(updates: dict[str, CustomerUpdate], recorded: dict[str, tuple[int, str | None]]) -> None:
    """Lay memberships recorded after an early apply read its states over those states: the
    segment a customer is in now is the previous segment of its next change (and the store's
    membership write checks it, see :meth:`Emitter.record`).

    >>> from streamseg.features.store import CustomerUpdate
    >>> ups = {"c1": CustomerUpdate("c1", ["applied"], {"seg": 1.0, "val_band": "low"}),
    ...        "c2": CustomerUpdate("c2", ["applied"], {"seg": 4.0})}
    >>> _recorded_over(ups, {"c1": (3, None), "c3": (2, "high")})
    >>> ups["c1"].state, ups["c2"].state
    ({'seg': 3.0, 'val_band': 'low'}, {'seg': 4.0})
    """
    for cid, (seg, band) in recorded.items():
        upd = updates.get(cid)
        if upd is None:
            continue
        upd.state["seg"] = float(seg)
        if band:
            upd.state["val_band"] = band


def _observe(m: Metrics, messages: Sequence[InMessage], dead: list[DeadLetter],
             changes: list[SegmentUpdate], started: float) -> None:
    """A batch's (or a timer's assignment's) outcomes, latency and duration, into the metrics."""
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
