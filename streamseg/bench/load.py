"""Benchmark load: realistic events from the persona simulator, sent as fast or as evenly as asked.

The simulator is slow next to the engine, so one pass of it is serialized once
into a :class:`Pool`; later passes rename every customer (``r<k>c000123``), which
keeps each event new to the engine (no duplicates). Each customer keeps the
spacing of its simulated days: an event's time (``ts``) is the simulator's,
shifted by whole periods per pass (:class:`Timeline`), so pass ``k + 1`` sits in
the period after pass ``k`` and the engine's event clock only moves forward,
through recency, frequency and tenure as the simulator planted them. A pass of
28 simulated days goes out in seconds to minutes, so every pass but the last
the timeline has room for is history: the bench runs its workers with
``history_step_hours=0`` (the leader's timers as live, no history pacing) and
event-time drift windows of weeks (``runner.SIMULATED_TIME``). Without a timeline
every event is stamped with the wall-clock time it is handed to the producer, as
the bench did before (a customer's 28 days then reach the engine within a minute
and every customer looks alike). Both rewrites are a bytes replace. The Kafka
record timestamp is always the send time (the latency histogram's start).
Partitions are chosen here (crc32 of the customer id), so envelopes of many
events can go to the partition their customers hash to, and the producer skips
its pure-Python murmur2 partitioner.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from streamseg.generate import assign_personas, simulate
from streamseg.settings import Settings
from streamseg.timeunits import WEEK_MS

#: (topic, partition, key, value, events in value)
Record = tuple[str, int, bytes | None, bytes, int]


@dataclass(frozen=True, slots=True)
class PoolEvent:
    transaction: bool
    customer_id: bytes
    value: bytes
    ts: bytes  # the value's '"ts":<ms>' text, replaced with the pass's time (or the send time)
    ms: int = 0  # the simulated event time in it


@dataclass(frozen=True)
class Pool:
    """One serialized pass of the simulator, and the persona it planted in each customer."""

    events: list[PoolEvent]
    customers: int
    truth: dict[str, str]  # customer id (first pass) -> planted persona
    days: float = 28.0  # simulated days and seed of the pass
    seed: int = 7
    end_ms: int = 0  # the simulated period's end (the wall clock when it was simulated)

    @classmethod
    def simulate(cls, customers: int, *, days: float = 28.0, seed: int = 7) -> Pool:
        truth = assign_personas(customers, seed=seed)
        end_ms = int(time.time() * 1000)
        events = [PoolEvent(ev.topic_role == "transactions", ev.customer_id.encode(),
                            orjson.dumps(ev.payload), b'"ts":%d' % ev.payload["ts"], ev.payload["ts"])
                  for ev in simulate(truth, days=days, end_ms=end_ms, seed=seed)]
        return cls(events, customers, truth, days, seed, end_ms)

    def __len__(self) -> int:
        return len(self.events)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Where each pass of a pool sits in event time: its own times, shifted by whole periods.

    A period is the pool's days rounded up to whole weeks (weekdays and hours of
    day are kept); pass ``k`` is shifted by ``(k - last)`` periods, so passes follow
    one another and pass ``last`` keeps the simulator's times, which end when the
    pool was simulated: no event is ever in the future. ``last`` is as many periods
    as fit between the earliest event time the engine accepts and the pool's start,
    so pass 0 is accepted too: the number of passes a subject sends depends on the
    rates it measures, so it cannot be planned before pass 0 goes out, and from
    2000-01-01 (``STREAMSEG_EARLIEST_EVENT_TIME``'s default) there is room for about
    350 passes of 28 days, 20 times what a full run sends. A pass past ``last``
    would be in the future: it raises instead.

    >>> day = 86_400_000
    >>> pool = Pool([], 0, {}, days=28.0, end_ms=1000 * day)
    >>> t = Timeline.of(pool, earliest_ms=860 * day)
    >>> t.period_ms // day, t.last, t.shift_ms(t.last), t.shift_ms(0) // day
    (28, 4, 0, -112)
    >>> t.start_ms(0) // day, t.start_ms(1) // day  # pass 0 starts at the earliest accepted time or after
    (860, 888)
    >>> t.shift_ms(5)
    Traceback (most recent call last):
    ...
    RuntimeError: pass 5 of the pool would end 28 days in the future: the timeline holds passes 0-4
    """

    period_ms: int
    last: int  # the pass that keeps the pool's own times
    days_ms: int  # one pass's simulated span
    end_ms: int  # ... and its end, unshifted

    @classmethod
    def of(cls, pool: Pool, earliest_ms: int) -> Timeline:
        days_ms = int(pool.days * 86_400_000)
        period = -(-days_ms // WEEK_MS) * WEEK_MS
        last = (pool.end_ms - days_ms - earliest_ms) // period
        if last < 0:
            raise ValueError("the pool starts before the earliest event time the engine accepts")
        return cls(period, last, days_ms, pool.end_ms)

    def shift_ms(self, k: int) -> int:
        """How far pass ``k``'s event times are moved from the simulator's."""
        if k > self.last:
            raise RuntimeError(f"pass {k} of the pool would end {(k - self.last) * self.period_ms // 86_400_000}"
                               f" days in the future: the timeline holds passes 0-{self.last}")
        return (k - self.last) * self.period_ms

    def start_ms(self, k: int) -> int:
        """The start of pass ``k``'s simulated period (its events are at or after it)."""
        return self.end_ms - self.days_ms + self.shift_ms(k)


@dataclass
class Cursor:
    """How many events a load iterator has taken from its pool (all passes together), whether
    the record it yielded last ended a round (every event of its passes yielded), and its rounds.

    A **round** is one period of simulated time holding ``lanes`` passes side by side, each
    under its own names, their events interleaved in time order: ``lanes`` times the
    customers in the same simulated days. A phase sets :attr:`lanes` before its first round
    (it is read as a round begins): the bench raises its rate with more customers, as a
    shop's load rises, not by pressing the same days into fewer seconds (``Plan.lane_share``).
    """

    taken: int = 0
    pass_sent: bool = False  # the last record yielded ended a round
    lanes: int = 1  # passes side by side in the rounds that begin from now on
    #: every round begun: (cursor count at its start, its first pass, its lanes)
    rounds: list[tuple[int, int, int]] = field(default_factory=list)

    def last_round(self) -> tuple[int, int]:
        """(first pass, lanes) of the last round sent whole."""
        whole = self.rounds if self.pass_sent else self.rounds[:-1]
        if not whole:
            raise LookupError("no round has been sent whole")
        return whole[-1][1], whole[-1][2]


def renamed(customer_id: str, k: int) -> str:
    """A pool customer's id in pass ``k`` (the first pass keeps the simulator's ids)."""
    return f"r{k}{customer_id}" if k else customer_id


def events(pool: Pool, first_pass: int = 0, cursor: Cursor | None = None,
           timeline: Timeline | None = None) -> Iterator[tuple[bool, bytes, bytes]]:
    """(is_transaction, customer_id, value) forever, in rounds of ``cursor.lanes`` passes side by
    side, renamed every pass; timed by ``timeline`` (round ``r``'s events shifted by ``r``
    periods), or stamped when taken without one. Passes are numbered across rounds, so every
    customer of the run has a name of its own; round ``r`` starts at pass ``first_pass`` as
    round ``first_pass`` (one lane a round: pass ``k`` is round ``k``).

    >>> pool = Pool([PoolEvent(False, b"c0", b'{"customer_id":"c0","ts":5}', b'"ts":5', 5)], 1,
    ...             {"c0": "a"}, days=7.0, end_ms=5)
    >>> cur = Cursor()
    >>> it = events(pool, cursor=cur, timeline=Timeline(period_ms=7, last=2, days_ms=7, end_ms=5))
    >>> [next(it)[2] for _ in range(2)]
    [b'{"customer_id":"c0","ts":-9}', b'{"customer_id":"r1c0","ts":-2}']
    >>> cur.lanes = 2  # the next round: two passes in the same simulated days
    >>> [next(it)[2] for _ in range(2)], cur.rounds
    ([b'{"customer_id":"r2c0","ts":5}', b'{"customer_id":"r3c0","ts":5}'], [(0, 0, 1), (1, 1, 1), (2, 2, 2)])
    """
    k = r = first_pass
    cursor = cursor if cursor is not None else Cursor()
    n = len(pool.events)
    while True:
        lanes = max(1, cursor.lanes)
        cursor.rounds.append((cursor.taken, k, lanes))
        prefixes = [f"r{k + j}".encode() if k + j else b"" for j in range(lanes)]
        shift = timeline.shift_ms(r) if timeline is not None else None
        for i, ev in enumerate(pool.events):
            if shift is None:
                value = ev.value.replace(ev.ts, b'"ts":%d' % (time.time() * 1000), 1)
            else:
                value = ev.value.replace(ev.ts, b'"ts":%d' % (ev.ms + shift), 1) if shift else ev.value
            for j, prefix in enumerate(prefixes):
                cursor.taken += 1
                cursor.pass_sent = i == n - 1 and j == lanes - 1
                if not prefix:
                    yield ev.transaction, ev.customer_id, value
                else:
                    cid = prefix + ev.customer_id
                    yield ev.transaction, cid, value.replace(b'"' + ev.customer_id, b'"' + cid)
        k += lanes
        r += 1


def partition_of(customer_id: bytes, partitions: int) -> int:
    return zlib.crc32(customer_id) % partitions


def skip_to_round(records: Iterator[Record], cursor: Cursor) -> None:
    """Take, unsent, the rest of the round ``cursor`` is in (nothing if the last record
    yielded ended one): the next record begins a round, with ``cursor.lanes`` passes.

    >>> pool = Pool([PoolEvent(False, b"c%d" % i, b'{"customer_id":"c%d","ts":0}' % i, b'"ts":0')
    ...              for i in range(3)], 3, {"c0": "a", "c1": "a", "c2": "b"})
    >>> cur = Cursor()
    >>> it = singles(Settings(), pool, cursor=cur)
    >>> _ = next(it)
    >>> skip_to_round(it, cur); cur.taken, next(it)[2]
    (3, b'r1c0')
    >>> skip_to_round(it, cur); cur.taken  # one event into pass 1 (just sent): the rest is skipped
    6
    """
    while cursor.taken and not cursor.pass_sent:
        next(records)


def singles(settings: Settings, pool: Pool, first_pass: int = 0,
            cursor: Cursor | None = None, timeline: Timeline | None = None) -> Iterator[Record]:
    """One event per message, keyed by customer id (the README's input contract)."""
    topics = (settings.topic_clickstream, settings.topic_transactions)
    n = settings.topic_partitions
    cursor = cursor if cursor is not None else Cursor()
    for is_tx, cid, value in events(pool, first_pass, cursor, timeline):
        yield topics[is_tx], partition_of(cid, n), cid, value, 1


def envelopes(settings: Settings, pool: Pool, size: int, first_pass: int = 0,
              cursor: Cursor | None = None, timeline: Timeline | None = None) -> Iterator[Record]:
    """Batched envelopes: JSON arrays of ``size`` events of one topic and partition.

    At a round's end every open envelope goes out, shorter if need be: a round is
    sent whole before the next one begins (the quality figures score whole passes).

    >>> pool = Pool([PoolEvent(False, b"c%d" % i, b'{"ts":0}', b'"ts":0') for i in range(3)], 3, {})
    >>> cur = Cursor()
    >>> it = envelopes(Settings(topic_partitions=1), pool, 2, cursor=cur)
    >>> [(next(it)[4], cur.taken, cur.pass_sent) for _ in range(3)]
    [(2, 2, False), (1, 3, True), (2, 5, False)]
    """
    topics = (settings.topic_clickstream, settings.topic_transactions)
    n = settings.topic_partitions
    cursor = cursor if cursor is not None else Cursor()
    open_: dict[tuple[bool, int], list[bytes]] = {}
    for is_tx, cid, value in events(pool, first_pass, cursor, timeline):
        p = partition_of(cid, n)
        buf = open_.setdefault((is_tx, p), [])
        buf.append(value)
        if cursor.pass_sent:
            full = [(key, b) for key, b in open_.items() if b]
            for i, ((tx, part), b) in enumerate(full):
                cursor.pass_sent = i == len(full) - 1
                yield topics[tx], part, None, b"[" + b",".join(b) + b"]", len(b)
                b.clear()
        elif len(buf) >= size:
            cursor.pass_sent = False
            yield topics[is_tx], p, None, b"[" + b",".join(buf) + b"]", size
            buf.clear()


class Sender:
    """An aiokafka producer that bounds in-flight sends and reports what it sent."""

    def __init__(self, settings: Settings, *, linger_ms: int) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list,
                                         linger_ms=linger_ms, max_batch_size=512 * 1024,
                                         acks=1)
        self.pending: list[asyncio.Future[object]] = []

    async def __aenter__(self) -> Sender:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            await self.producer.stop()

    async def send(self, record: Record) -> None:
        topic, partition, key, value, _ = record
        self.pending.append(await self.producer.send(topic, value, key=key, partition=partition))
        if len(self.pending) >= 20_000:
            await self.flush()

    async def flush(self) -> None:
        await self.producer.flush()
        await asyncio.gather(*self.pending)
        self.pending.clear()


@dataclass(frozen=True, slots=True)
class Sent:
    events: int
    messages: int


async def preload(settings: Settings, records: Iterator[Record], n_events: int,
                  ends: Cursor | None = None) -> Sent:
    """Send records as fast as possible until ``n_events`` events are in Kafka (``ends``: the
    cursor of ``records``; then on until a round has gone out whole)."""
    events = messages = 0
    async with Sender(settings, linger_ms=20) as out:
        while events < n_events or (ends is not None and not ends.pass_sent):
            record = next(records)
            await out.send(record)
            events += record[4]
            messages += 1
    return Sent(events, messages)


#: Paced sends go out in ticks, as a collector flushes its buffer, of a length that
#: depends on the broker. Tansu's in-memory storage slows with the number of record
#: batches in a partition (measured: 100k messages in batches of 5 fetch at 0.9-6k msgs/s,
#: 400k messages in large batches at 360-400k msgs/s), and ticks of 5 ms made a batch of
#: ~4 messages per partition: the soak's fetches slowed until the worker starved. 50 ms
#: ticks make batches ten times larger (100 ms: bursts of that size raised the median
#: latency threefold). Apache Kafka has no such cost, and a 50 ms burst at 50% of the
#: maximum queues ~25 ms of work behind its first event: the rig, not the engine, would
#: be measured. There the tick is the smallest the producer sustains at 75% of the
#: engine's maximum with a margin (measured: 1, 2, 5 and 50 ms all kept up at 9,500 and
#: 20,000 events/s; 1 ms is the producer's linger and the loop's timer resolution);
#: docs/performance.md, "Running the benchmarks".
TICK_S = {"tansu": 0.05, "kafka": 0.002}


def tick_for(broker: str) -> float:
    """The paced producer's tick (seconds) on ``broker``: "kafka" or "tansu"."""
    return TICK_S[broker]


async def paced(settings: Settings, records: Iterator[Record], rate: float, seconds: float, *,
                tick: float, every: float | None = None,
                on_tick: Callable[[], None] | None = None, ends: Cursor | None = None) -> Sent:
    """Send ``rate`` events/s, evenly (a ``tick``'s worth at a time), for ``seconds``.

    The send time is the Kafka record timestamp, so the worker's latency
    histogram measures produced -> processed. ``on_tick`` is called every
    ``every`` seconds (and at the end). ``ends``: the cursor of ``records``; past
    ``seconds``, sending goes on at the same rate until a pass has gone out whole.
    """
    step = max(1.0, rate * tick)  # a tick's worth of events, sent together
    sent = messages = 0

    def over(elapsed: float) -> bool:
        return elapsed >= seconds and (ends is None or ends.pass_sent)

    async with Sender(settings, linger_ms=1) as out:
        t0 = time.monotonic()
        next_tick = every if every else float("inf")
        while not over(elapsed := time.monotonic() - t0):
            due = elapsed * rate + step
            while sent < due and not over(elapsed):
                record = next(records)
                await out.send(record)
                sent += record[4]
                messages += 1
            if on_tick is not None and elapsed >= next_tick:
                on_tick()
                next_tick += every or 0.0
            await asyncio.sleep(max(0.0, sent / rate - (time.monotonic() - t0)))
    if on_tick is not None:
        on_tick()
    return Sent(sent, messages)
