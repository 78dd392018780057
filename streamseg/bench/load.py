"""Benchmark load: realistic events from the persona simulator, sent as fast or as evenly as asked.

The simulator is slow next to the engine, so one pass of it is serialized once
into a :class:`Pool`; later passes rename every customer (``r<k>c000123``), which
keeps each event new to the engine (no duplicates). Every event is stamped with
the wall-clock time it is handed to the producer (``ts``), as live traffic is:
the simulated days give each customer a realistic mix and order of events, and
the engine's event-time machinery (recency, drift windows) runs at the speed
of the wall clock, not of a replay (``load_tests/replay_bench.py`` measures
replays). Both rewrites are a bytes replace. Partitions are chosen here (crc32
of the customer id), so envelopes of many events can go to the partition their
customers hash to, and the producer skips its pure-Python murmur2 partitioner.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer

from streamseg.generate import assign_personas, simulate
from streamseg.settings import Settings

#: (topic, partition, key, value, events in value)
Record = tuple[str, int, bytes | None, bytes, int]


@dataclass(frozen=True, slots=True)
class PoolEvent:
    transaction: bool
    customer_id: bytes
    value: bytes
    ts: bytes  # the value's '"ts":<ms>' text, replaced with the send time


@dataclass(frozen=True)
class Pool:
    """One serialized pass of the simulator, and the persona it planted in each customer."""

    events: list[PoolEvent]
    customers: int
    truth: dict[str, str]  # customer id (first pass) -> planted persona
    days: float = 28.0  # simulated days and seed of the pass
    seed: int = 7

    @classmethod
    def simulate(cls, customers: int, *, days: float = 28.0, seed: int = 7) -> Pool:
        truth = assign_personas(customers, seed=seed)
        events = [PoolEvent(ev.topic_role == "transactions", ev.customer_id.encode(),
                            orjson.dumps(ev.payload), b'"ts":%d' % ev.payload["ts"])
                  for ev in simulate(truth, days=days, end_ms=int(time.time() * 1000), seed=seed)]
        return cls(events, customers, truth, days, seed)

    def __len__(self) -> int:
        return len(self.events)


@dataclass
class Cursor:
    """How many events a load iterator has taken from its pool (all passes together)."""

    taken: int = 0


def renamed(customer_id: str, k: int) -> str:
    """A pool customer's id in pass ``k`` (the first pass keeps the simulator's ids)."""
    return f"r{k}{customer_id}" if k else customer_id


def events(pool: Pool, first_pass: int = 0,
           cursor: Cursor | None = None) -> Iterator[tuple[bool, bytes, bytes]]:
    """(is_transaction, customer_id, value) forever: stamped when taken, renamed every pass."""
    k = first_pass
    cursor = cursor or Cursor()
    while True:
        prefix = f"r{k}".encode() if k else b""
        for ev in pool.events:
            cursor.taken += 1
            value = ev.value.replace(ev.ts, b'"ts":%d' % (time.time() * 1000), 1)
            if k == 0:
                yield ev.transaction, ev.customer_id, value
            else:
                cid = prefix + ev.customer_id
                yield ev.transaction, cid, value.replace(b'"' + ev.customer_id, b'"' + cid)
        k += 1


def partition_of(customer_id: bytes, partitions: int) -> int:
    return zlib.crc32(customer_id) % partitions


def skip_to_pass(records: Iterator[Record], cursor: Cursor, n: int) -> int:
    """Take, unsent, the rest of the pass ``cursor`` is in (``n`` events a pass); returns
    the pass that starts next. Envelopes can overshoot its start (see ``Running.to_next_pass``).

    >>> pool = Pool([PoolEvent(False, b"c%d" % i, b'{"customer_id":"c%d","ts":0}' % i, b'"ts":0')
    ...              for i in range(3)], 3, {"c0": "a", "c1": "a", "c2": "b"})
    >>> cur = Cursor()
    >>> it = singles(Settings(), pool, cursor=cur)
    >>> _ = next(it)
    >>> skip_to_pass(it, cur, 3), cur.taken, next(it)[2]
    (1, 3, b'r1c0')
    >>> skip_to_pass(it, cur, 3), cur.taken  # one event into pass 1 (just sent): the rest is skipped
    (2, 6)
    """
    if cursor.taken % n:
        end = (cursor.taken // n + 1) * n
        while cursor.taken < end:
            next(records)
    return cursor.taken // n


def singles(settings: Settings, pool: Pool, first_pass: int = 0,
            cursor: Cursor | None = None) -> Iterator[Record]:
    """One event per message, keyed by customer id (the README's input contract)."""
    topics = (settings.topic_clickstream, settings.topic_transactions)
    n = settings.topic_partitions
    for is_tx, cid, value in events(pool, first_pass, cursor):
        yield topics[is_tx], partition_of(cid, n), cid, value, 1


def envelopes(settings: Settings, pool: Pool, size: int, first_pass: int = 0,
              cursor: Cursor | None = None) -> Iterator[Record]:
    """Batched envelopes: JSON arrays of ``size`` events of one topic and partition."""
    topics = (settings.topic_clickstream, settings.topic_transactions)
    n = settings.topic_partitions
    open_: dict[tuple[bool, int], list[bytes]] = {}
    for is_tx, cid, value in events(pool, first_pass, cursor):
        p = partition_of(cid, n)
        buf = open_.setdefault((is_tx, p), [])
        buf.append(value)
        if len(buf) >= size:
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


async def preload(settings: Settings, records: Iterator[Record], n_events: int) -> Sent:
    """Send records as fast as possible until ``n_events`` events are in Kafka."""
    events = messages = 0
    async with Sender(settings, linger_ms=20) as out:
        while events < n_events:
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
                on_tick: Callable[[], None] | None = None) -> Sent:
    """Send ``rate`` events/s, evenly (a ``tick``'s worth at a time), for ``seconds``.

    The send time is the Kafka record timestamp, so the worker's latency
    histogram measures produced -> processed. ``on_tick`` is called every
    ``every`` seconds (and at the end).
    """
    step = max(1.0, rate * tick)  # a tick's worth of events, sent together
    sent = messages = 0
    async with Sender(settings, linger_ms=1) as out:
        t0 = time.monotonic()
        next_tick = every if every else float("inf")
        while (elapsed := time.monotonic() - t0) < seconds:
            due = elapsed * rate + step
            while sent < due:
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
