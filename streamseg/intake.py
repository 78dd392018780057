"""What comes in: consumed messages -> validated events, or dead letters that say why.

:meth:`Intake.decode` turns a batch of messages into events (single events and
envelopes), dead-lettering what cannot be read, is not allowed or is too large;
every dead letter carries a bounded prefix of the original bytes, its size and
SHA-256 (:meth:`Intake.dead`), so it always fits the DLQ. Pure CPU, no I/O:
the engine runs it while the previous batch waits on Redis and Kafka. Once the
store has applied a batch, :meth:`Intake.account` counts what became of each event
(applied, a duplicate, or too late: a dead letter).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING

from streamseg.events.decode import Admission, Rejection, decode_message
from streamseg.events.models import Event
from streamseg.publish.records import DeadLetter

if TYPE_CHECKING:
    from streamseg.engine import BatchReport
    from streamseg.features.store import CustomerUpdate
    from streamseg.metrics import Metrics
    from streamseg.settings import Settings

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
    #: the consumer could not read this record (larger than its fetch size): why, else None
    unread: str | None = None


class Intake:
    """Messages of the input topics -> events and dead letters (see the module docstring)."""

    def __init__(self, settings: Settings, metrics: Metrics, wall_ms: Callable[[], float]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.wall_ms = wall_ms
        self.kinds = {settings.topic_clickstream: "click", settings.topic_transactions: "transaction"}

    def decode(
        self, messages: Sequence[InMessage], dead: list[DeadLetter]
    ) -> tuple[list[Event], list[tuple[InMessage, int | None]]]:
        events: list[Event] = []
        origin: list[tuple[InMessage, int | None]] = []
        now = int(self.wall_ms())
        skew = int(self.settings.max_future_skew_s * 1000)
        admission = Admission(self.settings.earliest_event_ms, self.settings.currencies)
        max_bytes = self.settings.max_message_bytes
        mismatched: Counter[str] = Counter()
        for msg in messages:  # per message: keep the loop lean
            kind = self.kinds.get(msg.topic)
            if kind is None or msg.unread:
                dead.append(self.dead(msg, Rejection("unknown_topic", f"no event kind for {msg.topic}")
                                       if kind is None else Rejection("too_large", msg.unread or "")))
                continue
            out = decode_message(msg.value, kind,  # type: ignore[arg-type]
                                 max_bytes=max_bytes, now_ms=now, max_future_ms=skew,
                                 admission=admission)
            if out.rejects:
                digests: dict[int, str] = {}  # an envelope's rejects share one digest
                dead.extend(self.dead(msg, r, digests) for r in out.rejects)
            events += out.events
            origin.extend(zip(repeat(msg), out.indices))
            if msg.key is not None and out.indices == [None] and \
                    msg.key != out.events[0].customer_id.encode():
                mismatched[msg.topic] += 1  # applied all the same: see docs/user-guide.md#input-topics
        for topic, n in mismatched.items():
            self.metrics.key_mismatches.labels(topic).inc(n)
        return events, origin

    def dead(self, msg: InMessage, r: Rejection, digests: dict[int, str] | None = None) -> DeadLetter:
        """The dead letter of (an element of) a message, carrying a bounded prefix of its bytes.

        ``digests`` (by message id) spares hashing one value again for every element
        of an envelope: 10,000 rejected elements of 64 KiB would hash 640 MB.
        """
        known = digests.get(id(msg)) if digests is not None else None
        dl = DeadLetter.build(
            reason=r.reason, detail=r.detail, topic=msg.topic, partition=msg.partition,
            offset=msg.offset, key=msg.key, original=msg.value, index=r.index,
            customer_id=r.customer_id, prefix_bytes=self.settings.dlq_prefix_bytes,
            unread=msg.unread is not None, sha256=known,
        )
        if digests is not None and dl.original_sha256 is not None:
            digests[id(msg)] = dl.original_sha256
        return dl

    def not_applied(self, events: list[Event], origin: list[tuple[InMessage, int | None]],
                     exc: Exception) -> list[DeadLetter]:
        """Dead letters for a batch the store refused for good, so acknowledging it loses nothing.

        Without this the exception would reach the consumer and stop the worker,
        and the same batch would stop it again after every restart.
        """
        log.error("a batch of %d events failed; dead-lettering it", len(events), exc_info=exc)
        detail = f"{type(exc).__name__}: {exc}"
        digests: dict[int, str] = {}
        return [self.dead(msg, Rejection("processing_error", detail, index, ev.customer_id), digests)
                for ev, (msg, index) in zip(events, origin, strict=True)]

    def account(
        self, events: list[Event], origin: list[tuple[InMessage, int | None]],
        updates: dict[str, CustomerUpdate], dead: list[DeadLetter], report: BatchReport,
    ) -> tuple[dict[str, int], dict[tuple[str, int], int]]:
        """What the store did with each event: count outcomes (metrics and ``report``),
        dead-letter late events. Returns the newest applied event time per customer, and
        per (topic, partition) for the clock."""
        statuses = {cid: iter(upd.statuses) for cid, upd in updates.items()}
        applied_ts: dict[str, int] = {}
        processed: Counter[str] = Counter()  # per topic: one metric update per label set
        duplicates: Counter[str] = Counter()
        digests: dict[int, str] = {}
        newest: dict[tuple[str, int], int] = {}
        for ev, (msg, index) in zip(events, origin, strict=True):  # per event: keep it lean
            status = next(statuses[ev.customer_id])
            if status == "applied":
                cid, ts, part = ev.customer_id, ev.ts_ms, (msg.topic, msg.partition)
                applied_ts[cid] = max(applied_ts.get(cid, 0), ts)
                newest[part] = max(newest.get(part, 0), ts)
                processed[msg.topic] += 1
            elif status == "duplicate":
                duplicates[msg.topic] += 1
            else:
                report.late += 1
                dead.append(self.dead(msg, Rejection(
                    "late_event", "event is older than the customer's newest event by more than "
                    f"the dedup horizon ({self.settings.dedup_horizon_days:g} days)",
                    index, ev.customer_id), digests))
        report.processed += processed.total()
        report.duplicates += duplicates.total()
        outcomes = {**{(t, "processed"): n for t, n in processed.items()},
                    **{(t, "duplicate"): n for t, n in duplicates.items()}}
        for (topic, outcome), n in outcomes.items():
            self.metrics.events.labels(topic, outcome).inc(n)
        return applied_ts, newest
