"""Faust's Kafka consumer, handing each fetch of input records to the engine as one batch.

Faust delivers one message at a time: its fetcher awaits a fresh set of four
tasks per message (``Service.wait_first``), the conductor and the stream's
queue add their own steps, and per-message sensors and acks follow. Measured
here, that alone caps a worker at a few thousand messages per second, well
below what the engine does with a batch. So the worker keeps Faust for what it
is good at -- consumer group and rebalancing, offset commits, the producer,
the web server, timers -- and replaces only the drain loop of its aiokafka
consumer (:meth:`BatchConsumer._drain_messages`): every fetch's records on the
input topics become one :class:`~streamseg.engine.InMessage` batch for the
handler; records of any other topic still go through Faust's conductor to
their agents.

Batches are processed one at a time, in order, but the next one is fetched and
decoded (``handler.prepare``, CPU only) while the current one waits on Redis
and Kafka, and its events are sent to the store then (``handler.apply_ahead``),
so on two cores the worker's Python and Valkey's Lua overlap. A batch applied
ahead and then not processed (partitions moved, or stopping) is not acknowledged.

Offsets keep Faust's at-least-once contract. A batch's offsets are marked
acknowledged in Faust's own book-keeping (the same lists ``Consumer.ack``
fills) only after the handler returns, i.e. after the engine's Redis writes and
Kafka publishes succeeded; Faust's commit task then commits them. While a batch
is in flight it is registered as an unacked message, so a rebalance
(``stream_wait_empty``) waits for it before committing and giving partitions
away. A batch that fails or is cancelled is never acknowledged: its records
are delivered again after a restart or rebalance, and the engine's per-event
idempotency makes the replay harmless. The engine raises only when the cluster
refuses the worker, never for a batch's content: no single record can stop a
worker, even one too large for the fetch size (dead-lettered by its offset, see
:func:`_unread_record`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from time import monotonic
from typing import Any, Protocol

import faust
from aiokafka.errors import IllegalStateError, RecordTooLargeError, TopicAuthorizationFailedError
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service, ServiceT
from mode.utils.futures import notify

from streamseg.alignment import EventTimeAligner
from streamseg.engine import InMessage
from streamseg.topics import EVENT_TIME_HEADER

log = logging.getLogger(__name__)
#: How often the consumer group's pending errors are looked at.
GROUP_CHECK_S = 1.0
#: Input partitions paused for event-time alignment: logged at most this often.
PAUSE_LOG_EVERY_S = 60.0


class BatchHandler(Protocol):
    """What a :class:`BatchConsumer` feeds (an :class:`~streamseg.engine.Engine`)."""

    def prepare(self, messages: Sequence[InMessage]) -> Any:
        """CPU-only work on a batch, done while the previous batch is in flight."""

    async def process(self, batch: Any) -> object:
        """Apply a prepared batch; its offsets are acknowledged once this returns."""

    # optional: ``apply_ahead(batch) -> bool`` starts a prepared batch's store writes while the
    # batch before it is processed, ``async drop_ahead()`` gives such a batch up (the engine's)

    def backlog(self, more: bool) -> None:
        """Said before each batch: more input is known to be waiting after it (the rest of a
        fetch, or a partition read short of its high watermark)."""


def _apply_ahead(handler: BatchHandler, prepared: Any) -> bool:
    """Let the handler start the next batch's store writes early, if it can
    (:meth:`streamseg.engine.Engine.apply_ahead`; other handlers cannot)."""
    ahead = getattr(handler, "apply_ahead", None)
    return bool(ahead(prepared)) if ahead is not None else False


async def _drop_ahead(handler: BatchHandler) -> None:
    drop = getattr(handler, "drop_ahead", None)
    if drop is not None:
        await drop()


class _InFlight:
    """Stands for a batch in Faust's set of unacked messages (what ``wait_empty`` waits on)."""

    refcount = 1

    def __init__(self) -> None:
        self.acked = False

    def __repr__(self) -> str:
        return "<streamseg batch in flight>"


Offsets = dict[TP, list[int]]


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        transport = self.consumer.transport
        # Faust hard-codes fetch_max_wait_ms=1500; aiokafka reads this when it starts
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms  # type: ignore[attr-defined]
        # a response as large as one partition's largest fetch (Faust leaves aiokafka's 50 MB)
        consumer._fetch_max_bytes = max(consumer._fetch_max_bytes, consumer._max_partition_fetch_bytes)
        return consumer

    async def raise_group_errors(self) -> None:
        """Raise what aiokafka's group coordinator holds for the user (runs in this thread).

        aiokafka's ``getmany`` does this before each fetch; Faust reads the
        fetcher directly and never does, so a refused JoinGroup
        (GROUP_AUTHORIZATION_FAILED: a missing ACL) left the worker waiting to
        join for ever, without a word.
        """
        consumer = self._consumer
        coordinator = getattr(consumer, "_coordinator", None)
        if coordinator is not None:
            coordinator.check_errors()


class ShortFetchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the transport's fetch wait instead of Faust's fixed 1.5 s.

    A broker may hold a fetch for its whole wait even when records arrive
    meanwhile (Tansu, the embedded broker, does), and then that wait is
    added to the latency of every event.
    """

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class BatchConsumer(ShortFetchConsumer):
    """Faust's aiokafka consumer whose fetches on the transport's batch topics go to its handler."""

    transport: BatchTransport
    _paused_logged = float("-inf")  # when input partitions paused for alignment were logged

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # overrides Faust's
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        handler = self.transport.batch_handler
        most = self.transport.batch_max
        inflight: asyncio.Future[None] | None = None
        fetched: Iterator[tuple[TP, Any]] | None = None  # the rest of the last fetch
        generation = self.app.consumer_generation_id
        active: set[TP] | None = None
        batch_topics = self.transport.batch_topics
        # records ahead in event time of a partition still behind wait for it (alignment.py)
        aligner = EventTimeAligner(record_time, lambda tp: tp.topic in batch_topics)
        paused: set[TP] = set()  # partitions paused here: too many records held

        async def seek_committed() -> None:  # partitions moved: read again from the commits
            aligner.clear()
            self._pause_crowded(paused, set())
            await self._seek_committed()

        try:
            while not (consumer_stopped() or fetcher_stopped()):
                if fetched is None:
                    asked = monotonic()
                    try:
                        records, active = await self._wait_next_records(1.0)
                    except RecordTooLargeError as exc:  # aiokafka skipped it: dead-letter it
                        if exc.args[1].topic not in batch_topics:
                            raise
                        records, active = _unread_record(exc), None
                    if inflight is not None and inflight.done():
                        finished, inflight = inflight, None
                        finished.result()  # a failed batch stops the worker now, unacknowledged
                    if not (records or aligner.held) or self.should_stop:
                        continue
                    if not self.flow_active:  # a rebalance began while we fetched
                        await seek_committed()
                        continue
                    aligner.add(records or {})
                    ready = aligner.release(self._waiting(), monotonic() - asked)
                    self._pause_crowded(paused, aligner.crowded())
                    if not ready:
                        continue
                    # across topics and partitions in record-time order: a batch mixes clicks
                    # and orders instead of draining one partition first, and on a replay
                    # (records written in event-time order) every partition reaches an
                    # event time together, so the leader's steps of history see them all
                    fetched = by_record_time(ready)
                    generation = self.app.consumer_generation_id
                elif not self.flow_active or self.app.consumer_generation_id != generation:
                    fetched = None  # a rebalance began: the rest of that fetch is not ours to take
                    await seek_committed()
                    continue
                head = list(islice(fetched, most))
                if len(head) < most:
                    fetched = None
                batch, offsets = await self._collect(head, active)
                if not batch:
                    continue
                prepared = handler.prepare(batch)
                if inflight is not None:
                    # its store writes go now, while the batch before is segmented and published
                    _apply_ahead(handler, prepared)
                    await inflight  # batches are processed one at a time, in order
                    inflight = None
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    await _drop_ahead(handler)  # not ours to acknowledge: it comes again
                    fetched = None  # partitions moved: fetch again from the commits
                    await seek_committed()
                    continue
                handler.backlog(fetched is not None or aligner.held > 0 or self._behind())
                inflight = self._start(handler, prepared, offsets)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            log.info("broker stopped the consumer, shutting down")
        except Exception as exc:  # the cluster refusing us stops the worker, without a traceback
            stop = self.transport.on_access_denied
            if stop is None or not stop(exc):
                raise
        finally:
            if inflight is not None and not inflight.done():
                inflight.cancel()  # stopping: the batch stays unacknowledged and comes again
                await asyncio.gather(inflight, return_exceptions=True)
            await _drop_ahead(handler)  # ... and so does one applied ahead of its turn

    async def _seek_committed(self) -> None:
        """Seek the partitions held to their commits after a rebalance began. A partition the
        next rebalance took away meanwhile makes aiokafka raise IllegalStateError (faust-streaming
        issue 94's race; seen crashing a worker as a second one joined): nothing is ours to seek
        then, and the assignment that follows seeks again."""
        try:
            await self.perform_seek()
        except IllegalStateError as exc:
            log.info("partitions moved again while seeking to the commits: %s", exc)

    @Service.task
    async def _watch_group_errors(self) -> None:
        """Every second, raise what aiokafka's group coordinator holds (see
        :meth:`_ConsumerThread.raise_group_errors`): a refusal stops the worker."""
        thread = self._thread
        if not isinstance(thread, _ConsumerThread):
            return
        last = ""
        while not self.should_stop:
            await self.sleep(GROUP_CHECK_S)
            if thread._consumer is None or self.should_stop:
                continue
            try:
                await thread.call_thread(thread.raise_group_errors)
            except Exception as exc:
                stop = self.transport.on_access_denied
                if stop is not None and stop(exc):
                    return
                if repr(exc) != last:  # aiokafka goes on once its error was taken
                    log.warning("consumer group: %r", exc)
                    last = repr(exc)

    async def _collect(self, records: list[tuple[TP, Any]],
                       active: set[TP] | None) -> tuple[list[InMessage], Offsets]:
        """Records -> the batch for the handler; other topics' records -> Faust's conductor.

        Read offsets and gaps are tracked as Faust's own drain loop does.
        """
        batch: list[InMessage] = []
        offsets: Offsets = {}
        batch_topics = self.transport.batch_topics
        for tp, r in records:
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            read, offset = self._read_offset[tp], r.offset
            if read is not None and offset < read:
                continue  # already delivered before a seek
            if read and offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, read + 1, offset)  # compaction or transaction markers
            if tp.topic in batch_topics:
                ts = r.timestamp
                batch.append(InMessage(r.topic, r.partition, offset, r.key, r.value,
                                       ts / 1000.0 if ts is not None else None,
                                       getattr(r, "unread", None)))
                offsets.setdefault(tp, []).append(offset)
            else:  # Faust's own per-message path, unchanged
                await self.wait_first(self.callback(self._to_message(tp, r)),
                                      self.suspend_flow.wait())
            self._read_offset[tp] = offset
        now = monotonic()
        for tp in offsets:
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            self.app.monitor.stream_inbound_time[tp] = now
        return batch, offsets

    def _waiting(self) -> set[TP]:
        """Input partitions with records at the broker after the last one fetched: the last
        fetch response's high watermark is past the consumer's position (as Faust's own lag
        check reads them)."""
        consumer = getattr(self._thread, "_consumer", None)
        try:
            states = consumer._fetcher._subscriptions.subscription.assignment  # type: ignore[union-attr]
        except AttributeError:  # not started, or no assignment yet
            return set()
        waiting = set()
        for tp in self.assignment():
            if tp.topic not in self.transport.batch_topics:
                continue
            state = states.state_value(TopicPartition(tp.topic, tp.partition))
            if (state is not None and state.highwater is not None and state.has_valid_position
                    and state.position < state.highwater):
                waiting.add(tp)
        return waiting

    def _pause_crowded(self, paused: set[TP], crowded: set[TP]) -> None:
        """Stop fetching the partitions holding too many records ahead of the others (Faust's
        own flow control for a full stream buffer), and resume the ones no longer crowded."""
        if crowded - paused and monotonic() - self._paused_logged >= PAUSE_LOG_EVERY_S:
            self._paused_logged = monotonic()
            log.info("input partitions paused while the others catch up in event time: %s "
                     "(logged at most every %.0f s)",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(crowded)), PAUSE_LOG_EVERY_S)
        # Faust's own TP: its active-partition set asserts the type, and fetches are keyed
        # by aiokafka's TopicPartition (equal, but another class)
        for tp in crowded - paused:
            self.on_buffer_full(TP(tp.topic, tp.partition))
        for tp in paused - crowded:
            self.on_buffer_drop(TP(tp.topic, tp.partition))
        paused.clear()
        paused.update(crowded)

    def _behind(self) -> bool:
        """An input partition read short of the high watermark its last fetch reported."""
        for tp, read in self._read_offset.items():
            if tp.topic not in self.transport.batch_topics:
                continue
            try:
                high = self.highwater(tp)
            except (AssertionError, IllegalStateError, KeyError):  # no longer assigned
                continue
            if high is not None and read is not None and read + 1 < high:
                return True
        return False

    def _start(self, handler: BatchHandler, prepared: Any, offsets: Offsets) -> asyncio.Future[None]:
        """Apply a batch in the background, registered as unacked until it ends either way."""
        marker = _InFlight()
        self._unacked_messages.add(marker)  # type: ignore[arg-type]
        task = asyncio.ensure_future(self._apply(handler, prepared, offsets))

        def release(_: object) -> None:  # also runs if the task is cancelled before it starts
            marker.acked = True
            self._unacked_messages.discard(marker)  # type: ignore[arg-type]
            notify(self._waiting_for_ack)

        task.add_done_callback(release)
        return task

    async def _apply(self, handler: BatchHandler, prepared: Any, offsets: Offsets) -> None:
        await handler.process(prepared)
        self._ack(offsets)
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    def _ack(self, offsets: Offsets) -> None:
        """Mark offsets acknowledged, as ``Consumer.ack`` does message by message."""
        with ack_lock:
            for tp, offs in offsets.items():
                committed = self._committed_offset[tp]
                index = self._acked_index[tp]
                new = [o for o in offs if (committed is None or o >= committed) and o not in index]
                index.update(new)
                self._acked[tp].extend(new)
                self._n_acked += len(new)


def by_record_time(records: Mapping[TP, Sequence[Any]]) -> Iterator[tuple[TP, Any]]:
    """A fetch's records merged across partitions by record time, each partition's own order
    kept (a merge, not a sort: a partition's records are never reordered).

    Record time is the event time a replay stamps in the :data:`~streamseg.topics.EVENT_TIME_HEADER`
    header, else the record timestamp (for a live producer, its send time: close to the event's).
    A replay's record timestamp is its send time, event-time order only as closely as its producer
    batches the partitions; split into batches, a partition behind would reach a step of
    history after it ran (docs/model.md, "Replays").

    >>> from types import SimpleNamespace as R
    >>> fetch = {"a": [R(timestamp=1), R(timestamp=5)], "b": [R(timestamp=2), R(timestamp=3)]}
    >>> [(tp, r.timestamp) for tp, r in by_record_time(fetch)]  # type: ignore[arg-type]
    [('a', 1), ('b', 2), ('b', 3), ('a', 5)]
    >>> sent = {"a": [R(timestamp=9, headers=[(EVENT_TIME_HEADER, b"40")])],
    ...         "b": [R(timestamp=1, headers=[(EVENT_TIME_HEADER, b"70")]), R(timestamp=2)]}
    >>> [r.timestamp for _, r in by_record_time(sent)]  # type: ignore[arg-type]
    [9, 1, 2]
    """
    return heapq.merge(*([(tp, r) for r in rs] for tp, rs in records.items()), key=_record_time)


def _record_time(pair: tuple[TP, Any]) -> int:
    return record_time(pair[1])


def record_time(record: Any) -> int:
    """A record's event-time header (a replay's) when it holds an integer, else its timestamp."""
    for name, value in getattr(record, "headers", None) or ():
        if name == EVENT_TIME_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):  # not ours, or damaged: the record time will do
                break
    return getattr(record, "timestamp", None) or 0


class _Unread:
    """Stands for a record the consumer could not read, so it goes through a batch like any
    other: dead-lettered by its offset (reason ``too_large``), then acknowledged."""

    key = value = timestamp = None

    def __init__(self, topic: str, partition: int, offset: int, why: str) -> None:
        self.topic, self.partition, self.offset, self.unread = topic, partition, offset, why


def _unread_record(exc: RecordTooLargeError) -> dict[TP, list[Any]]:
    """The record a RecordTooLargeError names, as a fetch of one :class:`_Unread` record.

    aiokafka raises it when a partition's fetch holds bytes but no whole record
    batch: a batch larger than ``max_partition_fetch_bytes`` that the broker cut
    (it hands over a whole oversized batch only for the first partition of a
    fetch). aiokafka has then already moved past that offset (aio-libs/aiokafka
    #1173); left alone, the error stops the worker and the offset is never
    acknowledged. Producers put an oversized record in a batch of its own, so
    the offset is that record's.
    """
    _, tp, offset, limit = exc.args
    why = (f"record is larger than the consumer's fetch size ({limit} bytes, "
           "STREAMSEG_FETCH_PARTITION_BYTES); it was not read")
    log.error("%s:%d offset %d: %s; dead-lettering it by its offset", tp.topic, tp.partition,
              offset, why)
    return {TP(tp.topic, tp.partition): [_Unread(tp.topic, tp.partition, offset, why)]}


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's producer, idempotent when its transport says so (Faust itself enables
    idempotence only inside transactions): a retried send after a leader change is
    then written once, not twice."""

    def _settings_extra(self) -> Mapping[str, Any]:
        extra = dict(super()._settings_extra())
        if getattr(self.transport, "idempotent", False):
            extra.update(acks="all", enable_idempotence=True)
        return extra


class ShortFetchTransport(faust_aiokafka.Transport):
    """The aiokafka transport, its consumer waiting at most ``fetch_max_wait_ms`` per fetch;
    its producer idempotent when ``idempotent`` (brokers without InitProducerId: False)."""

    Consumer = ShortFetchConsumer
    Producer = IdempotentProducer

    def __init__(self, url: list[Any], app: faust.App, *, fetch_max_wait_ms: int,
                 idempotent: bool = False) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.idempotent = idempotent

    async def _create_topic(self, owner: Any, client: Any, topic: str, partitions: int,
                            replication: int, **kwargs: Any) -> None:
        """Faust's topic creation (its leader-election topic, on every start), accepting a
        topic that exists although we may not create it.

        Kafka answers CreateTopics from a client without the CREATE ACL with
        TOPIC_AUTHORIZATION_FAILED even for an existing topic, and Faust decides
        whether to create from a metadata snapshot that may not hold the topic
        yet: a worker whose topics an operator created would need CREATE anyway.
        """
        try:
            await super()._create_topic(owner, client, topic, partitions, replication, **kwargs)
        except TopicAuthorizationFailedError:
            try:
                exists = topic in (await client.fetch_all_metadata()).topics()
            except Exception:
                exists = False
            if not exists:
                raise
            log.info("topic %r exists (this worker may not create topics: fine)", topic)


class BatchTransport(ShortFetchTransport):
    """The transport with a :class:`BatchConsumer` and what it hands batches to."""

    Consumer = BatchConsumer

    def __init__(self, url: list[Any], app: faust.App, *, fetch_max_wait_ms: int,
                 topics: frozenset[str], handler: BatchHandler, batch_max: int,
                 on_access_denied: Callable[[BaseException], bool] | None = None,
                 idempotent: bool = False) -> None:
        super().__init__(url, app, fetch_max_wait_ms=fetch_max_wait_ms, idempotent=idempotent)
        self.batch_topics = topics
        self.batch_handler = handler
        self.batch_max = batch_max
        #: called with a batch's error: True when it is the cluster refusing us (credentials,
        #: ACLs) and the worker is stopping, so the error need not crash Faust's fetcher
        self.on_access_denied = on_access_denied


def batch_topic(app: faust.App, names: Sequence[str], handler: BatchHandler, *,
                batch_max: int, fetch_max_wait_ms: int,
                on_access_denied: Callable[[BaseException], bool] | None = None,
                idempotent: bool = False) -> faust.TopicT:
    """Subscribe ``app`` to ``names``, their records going to ``handler`` in batches of at
    most ``batch_max`` messages.

    Call on a fresh app, before anything else touches its transport. The topic
    is registered with Faust's conductor, so the consumer subscribes to it and
    treats it as an acking topic, exactly as for an agent's topic.
    """
    app.transport = BatchTransport(app.conf.broker_consumer, app, topics=frozenset(names),
                                   handler=handler, batch_max=batch_max,
                                   fetch_max_wait_ms=fetch_max_wait_ms,
                                   on_access_denied=on_access_denied, idempotent=idempotent)
    topic = app.topic(*names, key_serializer="raw", value_serializer="raw")
    app.topics.add(topic)
    return topic
