"""``streamseg replay``: history files -> validated events -> the input topics, in event-time order.

Three steps. *Load*: read every file, map each row to the input contract,
validate it with the worker's own decoder and park it in a :class:`Spool`
(bad rows become dead letters, counted by reason). *Sort*: stably by event
time, across all files, so ties keep file order. *Send*: with aiokafka to the
input topics (key = customer id), paced at ``speed`` times real time or as
fast as the broker takes them; dead letters go to the DLQ topic first.

The Kafka record timestamp is the wall clock at send time, not the event
time: the worker's latency metric reads it, and months-old timestamps would
make the broker's retention delete the records at once. Event time travels
in the payload's ``ts``, and in a ``streamseg-event-ts`` header the worker
merges a fetch's partitions by (so each step of history sees every partition).

>>> import tempfile
>>> from streamseg.settings import Settings
>>> path = Path(tempfile.mkdtemp()) / "orders.csv"
>>> _ = path.write_text("cust,date,dollars\\n42,2026-01-02,9.5\\n42,2026-01-01,oops\\n")
>>> opts = ReplayOptions(paths=(path,), mapping=Mapping.parse("customer_id=cust,ts=date,amount=dollars",
...                      "currency=EUR"), dry_run=True, progress=False)
>>> s = asyncio.run(replay(Settings(), opts))
>>> s.rows_read, s.valid, s.rejected, s.first_event_ts
(2, 1, {'invalid_field': 1}, '2026-01-02T00:00:00.000Z')
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata, TopicPartition

from streamseg.errors import ConfigError, StreamsegError
from streamseg.events.decode import Admission, DecodeOutcome, Rejection, admit, decode_message
from streamseg.events.models import MIN_TS_MS, TransactionEvent, iso
from streamseg.kafka_security import (
    access_denied,
    client_options,
    principal,
    producer_options,
    start_client,
)
from streamseg.publish.records import DeadLetter
from streamseg.replay.mapping import EventKind, Mapping
from streamseg.replay.progress import Progress
from streamseg.replay.readers import Format, RawRow, Table, open_table
from streamseg.replay.spool import Spool
from streamseg.settings import Settings
from streamseg.topics import EVENT_TIME_HEADER

log = logging.getLogger(__name__)
#: Spool topic indices.
TRANSACTIONS, CLICKS, DLQ = 0, 1, 2
#: Delivery futures awaited together: bounds memory, surfaces broker errors early.
IN_FLIGHT = 5_000
#: A pacing delay shorter than this is not slept (a sleep costs more than it keeps).
MIN_SLEEP_S = 0.001
#: Progress is updated every this many rows while loading.
LOAD_TICK = 1_000
EXAMPLES_PER_REASON = 3
#: Dead letters of replayed rows name no Kafka partition.
NO_PARTITION = -1


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What to replay and how (the CLI flags of ``streamseg replay``)."""

    paths: tuple[Path, ...]
    kind: EventKind | None = None  # None: inferred per file from its columns
    mapping: Mapping = field(default_factory=Mapping)
    format: Format | None = None  # None: from each file's extension
    delimiter: str | None = None
    header: bool | None = None  # None: detected
    speed: float | None = None  # None: as fast as possible
    dry_run: bool = False
    compression: str | None = None
    progress: bool = True
    max_lag: int | None = None  # None: do not wait for the worker

    def __post_init__(self) -> None:
        if self.speed is not None and self.speed <= 0:
            raise ConfigError("--speed must be > 0 (history seconds per wall second)")
        if self.max_lag is not None and self.max_lag < 1:
            raise ConfigError("--max-lag must be >= 1 event")
        if not self.paths:
            raise ConfigError("give at least one file to replay")


@dataclass(slots=True)
class FileReport:
    path: str
    format: str
    kind: str
    digest: str  # first 16 hex digits of the file's SHA-256
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    derived_ids: int = 0


@dataclass(slots=True)
class ReplaySummary:
    """Everything a replay did; printed at the end (``--json`` for scripts)."""

    files: list[FileReport] = field(default_factory=list)
    rows_read: int = 0
    valid: int = 0
    produced: int = 0
    produced_by_topic: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_examples: list[dict[str, object]] = field(default_factory=list)
    dead_lettered: int = 0  # rejected rows sent to the DLQ topic (none in a dry run)
    dlq_topic: str = ""
    first_event_ts: str | None = None
    last_event_ts: str | None = None
    speed: float | None = None
    dry_run: bool = False
    load_seconds: float = 0.0
    send_seconds: float = 0.0
    rows_per_second: float = 0.0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes as stored, streamed (the file's identity for derived ids)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def derived_event_id(digest: str, row: int) -> str:
    """The event id of a row that has none: file identity + row position.

    >>> derived_event_id("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", 7)
    'r:9f86d081884c7d65:7'
    """
    return f"r:{digest[:16]}:{row}"


# --- load ---------------------------------------------------------------------


class Loader:
    """Reads files into a spool of valid events and a spool of dead letters."""

    def __init__(self, settings: Settings, options: ReplayOptions, summary: ReplaySummary) -> None:
        self.settings = settings
        self.options = options
        self.summary = summary
        self.events = Spool()
        self.dead = Spool()
        self.rejected: Counter[str] = Counter()
        self._examples: Counter[str] = Counter()
        self._first: int | None = None
        self._last: int | None = None
        self._now_ms = int(time.time() * 1000)  # for the worker's future-event rule
        self.total_bytes = sum(p.stat().st_size for p in options.paths if p.is_file())
        self.progress = Progress("reading", self.total_bytes, unit="bytes", enabled=options.progress)
        self._bytes_before = 0

    def load(self) -> None:
        for path in self.options.paths:
            self.summary.files.append(self._load_file(path))
            self._bytes_before += path.stat().st_size
            self.progress.update(self._bytes_before)
        self.progress.close()
        s = self.summary
        s.rejected = dict(self.rejected.most_common())
        s.valid = len(self.events)
        s.first_event_ts = iso(self._first) if self._first is not None else None
        s.last_event_ts = iso(self._last) if self._last is not None else None

    def _open(self, path: Path) -> tuple[Table, EventKind]:
        m, o = self.options.mapping, self.options
        table = open_table(path, o.format, delimiter=o.delimiter, header=o.header,
                           expected=[m.column("customer_id"), m.column("ts")])
        kind = o.kind or (m.infer_kind(table.columns) if table.columns else None)
        if kind is None:
            raise ConfigError(f"{path}: cannot tell transactions from clicks by the columns "
                              f"({', '.join(table.columns or []) or 'none'}): pass --kind")
        if table.format != "jsonl":  # JSON Lines have no fixed columns to check against
            m.check_columns(kind, table.columns or [], str(path))
        return table, kind

    def _load_file(self, path: Path) -> FileReport:
        table, kind = self._open(path)
        digest = file_digest(path)
        report = FileReport(str(path), table.format, kind, digest[:16])
        source = f"replay:{path}"
        for row in table:
            report.rows += 1
            if report.rows % LOAD_TICK == 0:
                self.progress.update(self._bytes_before + table.bytes_read(row.number))
            if self._accept(row, kind, digest, source, report):
                report.valid += 1
            else:
                report.rejected += 1
        self.summary.rows_read += report.rows
        return report

    def _accept(self, row: RawRow, kind: EventKind, digest: str, source: str,
                report: FileReport) -> bool:
        if row.fields is None:
            assert row.error is not None
            self._reject(row, source, *row.error, customer_id=None)
            return False
        derived = derived_event_id(digest, row.number)
        try:
            payload = self.options.mapping.payload(row.fields, kind, derived)
        except ValueError as exc:  # the ts column does not match --ts-format
            self._reject(row, source, "invalid_field", f"ts: {exc}", customer_id=None)
            return False
        # the worker's checks, so a row it would refuse is refused here with the same reason;
        # the event goes out as the file has it (the worker converts its currency)
        out = decode_message(_dumps(payload), kind, max_bytes=self.settings.max_message_bytes,
                             now_ms=self._now_ms,
                             max_future_ms=int(self.settings.max_future_skew_s * 1000),
                             admission=Admission(self.settings.earliest_event_ms))
        r = self._refusal(out)
        if r is not None:
            self._reject(row, source, r.reason, r.detail, customer_id=r.customer_id)
            return False
        event = out.events[0]
        if event.event_id == derived:
            report.derived_ids += 1
        value = orjson.dumps(event.model_dump(by_alias=True, exclude={"kind"}, exclude_none=True))
        topic = TRANSACTIONS if isinstance(event, TransactionEvent) else CLICKS
        self.events.add(event.ts_ms, topic, event.customer_id.encode(), value)
        self._first = event.ts_ms if self._first is None else min(self._first, event.ts_ms)
        self._last = event.ts_ms if self._last is None else max(self._last, event.ts_ms)
        return True

    def _refusal(self, out: DecodeOutcome) -> Rejection | None:
        """Why the worker would refuse the row's event (its currency too), or None."""
        if out.rejects:
            return out.rejects[0]
        checked = admit(out.events[0], Admission(MIN_TS_MS, self.settings.currencies))
        return checked if isinstance(checked, Rejection) else None

    def _reject(self, row: RawRow, source: str, reason: str, detail: str, *,
                customer_id: str | None) -> None:
        key = customer_id.encode() if customer_id else None
        dl = DeadLetter.build(reason=reason, detail=detail, topic=source, partition=NO_PARTITION,
                              offset=row.number, key=key, original=row.original,
                              customer_id=customer_id)
        self.dead.add(0, DLQ, key or b"", dl.to_bytes())
        self.rejected[reason] += 1
        if self._examples[reason] < EXAMPLES_PER_REASON:
            self._examples[reason] += 1
            self.summary.rejected_examples.append(
                {"file": source.removeprefix("replay:"), "row": row.number, "reason": reason,
                 "detail": detail})


def _dumps(payload: dict[str, object]) -> bytes:
    return orjson.dumps(payload, default=_json_default)


def _json_default(value: object) -> object:
    """Whatever a Parquet column can hold that JSON cannot (decimals, bytes, times) as text."""
    return str(value)


# --- send ------------------------------------------------------------------------


class Pacer:
    """At ``speed`` S, an event with event time t is due at start + (t - t0) / S.

    >>> p = Pacer(3600.0, now=lambda: 100.0)
    >>> p.delay(1_000_000), p.delay(1_000_000 + 3_600_000)  # one hour of history: one second
    (0.0, 1.0)
    """

    def __init__(self, speed: float | None, now: Callable[[], float] = time.monotonic) -> None:
        self.speed = speed
        self._now = now
        self._t0: int | None = None
        self._start = 0.0

    def delay(self, ts_ms: int) -> float:
        """Seconds to wait before sending an event of time ``ts_ms`` (0 when due or unpaced)."""
        if self.speed is None:
            return 0.0
        now = self._now()
        if self._t0 is None:
            self._t0, self._start = ts_ms, now
            return 0.0
        return max(0.0, self._start + (ts_ms - self._t0) / 1000.0 / self.speed - now)


class LagGate:
    """Holds a replay back while the worker's consumer group is more than ``max_lag`` events behind.

    The worker reads the two input topics at its own pace; draining a backlog
    it may run weeks of event time ahead on one topic, and the other topic's
    events then arrive late (beyond the dedup horizon) and are refused. With
    at most ``max_lag`` events outstanding, the worker's view of the topics can
    drift apart by no more than the event time those events span.
    Lag = events this replay sent that the group (``STREAMSEG_APP_ID``) has not
    committed, from the committed offsets of its input partitions.
    """

    POLL_S = 0.25
    WARN_EVERY_S = 30.0

    def __init__(self, settings: Settings, max_lag: int) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        self.group = settings.app_id
        self.max_lag = max_lag
        self.inputs = set(settings.input_topics)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list,
                                         **client_options(settings))
        self.first: dict[TopicPartition, int] = {}  # offset of this replay's first record
        self.end: dict[TopicPartition, int] = {}  # one past its last acknowledged record

    def sent(self, meta: RecordMetadata) -> None:
        if meta.topic not in self.inputs:
            return
        tp = TopicPartition(meta.topic, meta.partition)
        self.first[tp] = min(self.first.get(tp, meta.offset), meta.offset)
        self.end[tp] = max(self.end.get(tp, 0), meta.offset + 1)

    async def lag(self) -> int:
        committed = await self.admin.list_consumer_group_offsets(self.group, partitions=list(self.end))
        total = 0
        for tp, end in self.end.items():
            done = committed[tp].offset if tp in committed else -1
            total += end - max(done, self.first[tp])
        return total

    async def wait(self) -> None:
        """Return once the group is at most ``max_lag`` events behind this replay."""
        since = time.monotonic()
        while (lag := await self.lag()) > self.max_lag:
            if time.monotonic() - since > self.WARN_EVERY_S:
                log.warning("waiting for consumer group %s: %d events behind (--max-lag %d); "
                            "is a worker running?", self.group, lag, self.max_lag)
                since = time.monotonic()
            await asyncio.sleep(self.POLL_S)


async def send(settings: Settings, loader: Loader, options: ReplayOptions,
               summary: ReplaySummary) -> None:
    """Dead letters, then every event in time order; returns once the broker has them all."""
    topics = {TRANSACTIONS: settings.topic_transactions, CLICKS: settings.topic_clickstream,
              DLQ: settings.topic_dlq}
    security = client_options(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list,
                                linger_ms=20, max_batch_size=256 * 1024,
                                compression_type=options.compression,
                                **producer_options(settings))
    gate = LagGate(settings, options.max_lag) if options.max_lag else None
    # with a gate, look at the lag often enough that it can overshoot by half at most
    check = min(LOAD_TICK, max(1, options.max_lag // 2)) if options.max_lag else IN_FLIGHT
    progress = Progress("producing", len(loader.events), enabled=options.progress)
    produced: Counter[str] = Counter()
    pending: list[asyncio.Future[RecordMetadata]] = []
    started = time.monotonic()
    try:
        await start_client(producer, settings.kafka_bootstrap_list, security,
                           who=principal(settings))
        if gate:
            await start_client(gate.admin, settings.kafka_bootstrap_list, security,
                               who=principal(settings))
        for _, t, key, value in loader.dead.in_added_order():
            pending.append(await producer.send(topics[t], value=value, key=key or None))
            summary.dead_lettered += 1
        pacer = Pacer(options.speed)
        for n, (ts, t, key, value) in enumerate(loader.events.in_time_order(), start=1):
            wait = pacer.delay(ts)
            if wait > MIN_SLEEP_S or n % LOAD_TICK == 0:
                await asyncio.sleep(wait)  # also lets the sender task and Ctrl-C in
            # event time in a header: the worker merges partitions by it (streamseg/ingest.py)
            pending.append(await producer.send(topics[t], value=value, key=key,
                                               headers=[(EVENT_TIME_HEADER, b"%d" % ts)]))
            produced[topics[t]] += 1
            progress.update(n)
            if len(pending) >= check:
                await _settle(producer, pending, gate)
        await _settle(producer, pending, gate)
    except KafkaError as exc:
        denied = access_denied(exc, security, who=principal(settings))
        if denied is not None:
            raise denied from None
        raise StreamsegError(f"sending to Kafka at {settings.kafka_bootstrap} failed: {exc!r}") from exc
    finally:
        if gate:
            await gate.admin.close()
        await producer.stop()
        progress.close()
    summary.send_seconds = time.monotonic() - started
    summary.produced_by_topic = dict(produced)
    summary.produced = sum(produced.values())
    summary.rows_per_second = summary.produced / summary.send_seconds if summary.send_seconds else 0.0


async def _settle(producer: AIOKafkaProducer, pending: list[asyncio.Future[RecordMetadata]],
                  gate: LagGate | None) -> None:
    """Wait for the broker to acknowledge what was sent (and, with a gate, for the worker)."""
    if gate:
        await producer.flush()
    for meta in await asyncio.gather(*pending):
        if gate:
            gate.sent(meta)
    pending.clear()
    if gate:
        await gate.wait()


async def replay(settings: Settings, options: ReplayOptions) -> ReplaySummary:
    """Load, sort and (unless ``dry_run``) send; the summary says what happened to every row."""
    from streamseg.topics import ensure_topics

    summary = ReplaySummary(speed=options.speed, dry_run=options.dry_run, dlq_topic=settings.topic_dlq)
    loader = Loader(settings, options, summary)
    try:
        started = time.monotonic()
        loader.load()
        summary.load_seconds = time.monotonic() - started
        if not options.dry_run:
            await ensure_topics(settings)
            await send(settings, loader, options, summary)
    finally:
        loader.events.close()
        loader.dead.close()
    return summary


def format_summary(s: ReplaySummary) -> str:
    """The human-readable summary printed at the end of a replay."""
    lines = [f"replay summary{' (dry run: nothing sent)' if s.dry_run else ''}"]
    for f in s.files:
        lines.append(f"  {f.path}  {f.format} {f.kind}  rows {f.rows:,}  valid {f.valid:,}  "
                     f"rejected {f.rejected:,}  derived ids {f.derived_ids:,}  sha256 {f.digest}")
    lines.append(f"rows read     {s.rows_read:,}")
    if s.dry_run:
        lines.append(f"valid         {s.valid:,}")
    else:
        by_topic = ", ".join(f"{t} {n:,}" for t, n in sorted(s.produced_by_topic.items()))
        lines.append(f"produced      {s.produced:,}" + (f"  ({by_topic})" if by_topic else ""))
    sent = "" if s.dry_run else f"  -> {s.dlq_topic}"
    lines.append(f"rejected      {sum(s.rejected.values()):,}{sent}")
    for reason, n in s.rejected.items():
        lines.append(f"  {reason:<18}{n:,}")
        lines.extend(f"    e.g. {ex['file']} row {ex['row']}: {ex['detail']}"
                     for ex in s.rejected_examples if ex["reason"] == reason)
    lines.append(f"event time    {s.first_event_ts or '-'} .. {s.last_event_ts or '-'}")
    if not s.dry_run:
        pace = f"speed x{s.speed:g}" if s.speed else "as fast as possible"
        lines.append(f"sent in       {s.send_seconds:.1f} s ({s.rows_per_second:,.0f} rows/s, {pace})")
    return "\n".join(lines)
