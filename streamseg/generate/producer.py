"""Send the simulated events to Kafka (aiokafka) and keep the ground truth on disk.

Records are keyed by customer id and carry ``orjson`` payloads; their Kafka
timestamp is left to the producer (wall clock), so months-old event times do
not make the broker's retention delete them at once.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "truth.csv"
>>> write_truth({"c000001": "bargain_hunter"}, path)
>>> read_truth(path)
{'c000001': 'bargain_hunter'}
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from streamseg.generate.personas import GeneratedEvent, PlanSource, simulate
from streamseg.kafka_security import (
    check_settings_access,
    client_options,
    principal,
    producer_options,
    start_client,
)
from streamseg.settings import Settings

TRUTH_HEADER = ("customer_id", "persona")
#: Delivery futures awaited together (bounds memory and surfaces errors early).
IN_FLIGHT = 5_000
#: Pacing, duration and progress are checked every this many events (at most).
CHECK_EVERY = 100
PROGRESS_EVERY = 5_000
#: Bound on the flush when stopping early (cancellation, errors).
FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class GenerateStats:
    """What one :func:`produce` run sent, and how fast."""

    events_produced: int
    clicks: int
    transactions: int
    customers: int
    seconds: float
    events_per_second: float


def write_truth(truth: Mapping[str, str], path: Path) -> None:
    """Write the ground truth as CSV ``customer_id,persona`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(TRUTH_HEADER)
        w.writerows(sorted(truth.items()))
    tmp.replace(path)


def read_truth(path: Path) -> dict[str, str]:
    """Read a ground-truth CSV written by :func:`write_truth`."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None or tuple(h.strip() for h in header) != TRUTH_HEADER:
            raise ValueError(f"{path}: expected header {','.join(TRUTH_HEADER)}, got {header}")
        truth: dict[str, str] = {}
        for n, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{n}: expected 2 columns, got {len(row)}")
            truth[row[0]] = row[1]
        return truth


async def produce(
    settings: Settings,
    truth: Mapping[str, str],
    *,
    days: float,
    seed: int,
    rate: float | None,
    duration: float | None,
    end_ms: int | None = None,
    truth_path: Path | None = None,
    progress: Callable[[int], None] | None = None,
    scenario: PlanSource | None = None,
) -> GenerateStats:
    """Simulate ``truth``'s customers and send every event to its Kafka topic.

    ``rate``: events per second (None: as fast as possible); ``duration``: stop
    after this many wall seconds (None: when the simulation ends); ``end_ms``:
    the end of simulated time (None: now). ``progress`` gets the running count.
    ``scenario`` (see :mod:`streamseg.generate.scenarios`) plans a drift scenario.
    On cancellation the producer is flushed and stopped, then the cancellation
    propagates.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0 events/s (or None for as fast as possible)")
    if duration is not None and duration < 0:
        raise ValueError("duration must be >= 0 seconds")
    if truth_path is not None:
        write_truth(truth, truth_path)
    end = int(time.time() * 1000) if end_ms is None else end_ms
    topics = {role: settings.topic(role) for role in ("clickstream", "transactions")}
    producer = await _start_producer(settings, list(topics.values()))
    tally = _Tally()
    pacer = _Pacer(rate, duration, progress)  # pace from the first send, not from connecting
    in_flight: list[asyncio.Future[object]] = []
    finished = False
    try:
        events = simulate(truth, days=days, end_ms=end, seed=seed, scenario=scenario)
        await _send_all(producer, events, topics, pacer, tally, in_flight)
        finished = True
    finally:
        await _stop(producer, in_flight, flush_first=not finished)
    if progress is not None:
        progress(tally.total)
    return tally.stats(time.monotonic() - pacer.t0)


async def _start_producer(settings: Settings, topics: list[str]) -> AIOKafkaProducer:
    """A started producer for ``settings``; a cluster that refuses us says so in one line
    (:class:`~streamseg.kafka_security.KafkaAccessDenied`) before aiokafka's own errors."""
    security = client_options(settings)
    if settings.kafka_security_protocol != "PLAINTEXT":
        await check_settings_access(settings, topics=topics, options=security)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_list, linger_ms=5, max_batch_size=262144,
        **producer_options(settings),
    )
    try:
        await start_client(producer, settings.kafka_bootstrap_list, security,
                           who=principal(settings))
    except BaseException:
        await producer.stop()
        raise
    return producer


async def _send_all(producer: AIOKafkaProducer, events: Iterable[GeneratedEvent],
                    topics: Mapping[str, str], pacer: _Pacer, tally: _Tally,
                    in_flight: list[asyncio.Future[object]]) -> None:
    """Send ``events`` as ``pacer`` allows, each to its topic keyed by customer; return once
    every send is acknowledged (or the duration is up)."""
    for ev in events:
        if not await pacer.step(tally.total):
            break
        in_flight.append(await producer.send(topics[ev.topic_role], value=orjson.dumps(ev.payload),
                                             key=ev.customer_id.encode()))
        tally.count(ev)
        if len(in_flight) >= IN_FLIGHT:
            await asyncio.gather(*in_flight)
            in_flight.clear()
    await producer.flush()
    await asyncio.gather(*in_flight)


async def _stop(producer: AIOKafkaProducer, in_flight: list[asyncio.Future[object]], *,
                flush_first: bool) -> None:
    """Stop ``producer``; cancelled or failed (``flush_first``): deliver what was handed over,
    quietly and within FLUSH_TIMEOUT_S, first."""
    try:
        if flush_first:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.flush(), FLUSH_TIMEOUT_S)
                await asyncio.gather(*in_flight, return_exceptions=True)
    finally:
        await producer.stop()


class _Pacer:
    """Holds sends to ``rate`` events/s and ends them after ``duration`` seconds.

    The clock is checked about every 50 ms at low rates, every CHECK_EVERY events otherwise.
    """

    def __init__(self, rate: float | None, duration: float | None,
                 progress: Callable[[int], None] | None) -> None:
        self.rate = rate
        self.duration = duration
        self.progress = progress
        self.every = CHECK_EVERY if rate is None else max(1, min(CHECK_EVERY, int(rate / 20)))
        self.t0 = time.monotonic()
        self.reported = 0

    async def step(self, n: int) -> bool:
        """Before event ``n``: wait for its turn; False once the duration is up."""
        if n % self.every:
            return True
        elapsed = time.monotonic() - self.t0
        wait = max(0.0, n / self.rate - elapsed) if self.rate is not None else 0.0
        if self.duration is not None and elapsed + wait >= self.duration:
            await asyncio.sleep(max(0.0, self.duration - elapsed))
            return False
        await asyncio.sleep(wait)  # also lets the sender (and cancellation) in
        if self.progress is not None and n - self.reported >= PROGRESS_EVERY:
            self.progress(n)
            self.reported = n
        return True


@dataclass(slots=True)
class _Tally:
    """What was sent so far."""

    clicks: int = 0
    transactions: int = 0
    customers: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return self.clicks + self.transactions

    def count(self, ev: GeneratedEvent) -> None:
        if ev.topic_role == "clickstream":
            self.clicks += 1
        else:
            self.transactions += 1
        self.customers.add(ev.customer_id)

    def stats(self, seconds: float) -> GenerateStats:
        total = self.total
        return GenerateStats(events_produced=total, clicks=self.clicks,
                             transactions=self.transactions, customers=len(self.customers),
                             seconds=seconds,
                             events_per_second=total / seconds if seconds > 0 else 0.0)
