"""Subscriber client for personalization services: typed segment updates and catalog changes.

``SegmentSubscriber`` reads ``streamseg.segment-updates.v1`` (key = customer)
and ``streamseg.segments.v1`` (key = segment) as one consumer group and yields
:class:`~streamseg.publish.records.SegmentUpdate`,
:class:`~streamseg.publish.records.CatalogEntry` or :class:`Tombstone` (an
erased customer, a removed segment)::

    async with SegmentSubscriber("kafka:9092", group_id="offers") as sub:
        async for item in sub:
            if isinstance(item, SegmentUpdate):
                choose_offer(item.customer_id, item.segment_name)

Delivery is at least once. An item counts as handled when the loop asks for
the next one, or when the ``async with`` block exits without an exception;
handled offsets are committed every ``commit_every`` items or
``commit_interval`` seconds, before partitions are handed to another member,
and on exit. After a crash the items since the last commit come again, so
handle them idempotently (both topics carry a customer's or segment's latest
state, so "apply the newest" is naturally idempotent). A new group starts at
the beginning: the compacted topics then replay every customer's current
segment and the whole catalog. Records that do not parse are logged, counted
in ``invalid`` and skipped.

A secured cluster takes aiokafka's own security keywords, the same the
worker uses (``docs/security.md``)::

    from aiokafka.helpers import create_ssl_context

    SegmentSubscriber("kafka:9093", group_id="offers", security_protocol="SASL_SSL",
                      ssl_context=create_ssl_context(cafile="ca.pem"),
                      sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="offers",
                      sasl_plain_password=password)

or, from ``STREAMSEG_KAFKA_*`` settings, ``SegmentSubscriber.from_settings(settings, "offers")``.
If the cluster refuses the subscriber (credentials, TLS, a missing ACL),
``start()`` and iteration raise :class:`~streamseg.kafka_security.KafkaAccessDenied`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, ValidationError

from streamseg.kafka_security import (
    OPTION_NAMES,
    access_denied,
    client_options,
    principal,
    start_client,
)
from streamseg.publish.records import CatalogEntry, SegmentUpdate
from streamseg.settings import Settings

log = logging.getLogger(__name__)


class Tombstone(BaseModel):
    """A key deleted from a compacted topic: an erased customer or a removed segment."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["customer", "segment"]
    key: str
    topic: str


Item = SegmentUpdate | CatalogEntry | Tombstone


class SegmentSubscriber:
    """Async iterator over segment updates and catalog changes; see the module docstring."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        group_id: str,
        *,
        updates_topic: str | None = "streamseg.segment-updates.v1",
        catalog_topic: str | None = "streamseg.segments.v1",
        commit_every: int = 500,
        commit_interval: float = 1.0,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        principal: str | None = None,
        **security: Any,
    ) -> None:
        """``security``: aiokafka's ``security_protocol``, ``ssl_context``, ``sasl_mechanism``,
        ``sasl_plain_username``, ``sasl_plain_password``; ``principal`` names this client in
        access errors (default: the SASL user)."""
        unknown = set(security) - OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown Kafka security option(s) {', '.join(sorted(unknown))}: "
                            f"use {', '.join(sorted(OPTION_NAMES))}")
        self.kinds: dict[str, Literal["customer", "segment"]] = {}
        if updates_topic:
            self.kinds[updates_topic] = "customer"
        if catalog_topic:
            self.kinds[catalog_topic] = "segment"
        if not self.kinds:
            raise ValueError("subscribe to at least one of updates_topic, catalog_topic")
        self._servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
        self._security = security
        self._principal = principal
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers, group_id=group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms, **security,
        )
        self.commit_every = commit_every
        self.commit_interval = commit_interval
        self.invalid = 0
        self._buffer: deque[ConsumerRecord[bytes, bytes]] = deque()
        self._current: ConsumerRecord[bytes, bytes] | None = None  # yielded, not yet handled
        self._handled: dict[TopicPartition, int] = {}  # next offset to commit
        self._uncommitted = 0
        self._committed_at = time.monotonic()

    @classmethod
    def from_settings(cls, settings: Settings, group_id: str, **kw: int | float) -> SegmentSubscriber:
        """Bootstrap, topic names and TLS/SASL options from ``settings`` (``STREAMSEG_*``)."""
        return cls(settings.kafka_bootstrap_list, group_id, updates_topic=settings.topic_segment_updates,
                   catalog_topic=settings.topic_segments, principal=principal(settings),
                   **kw, **client_options(settings))  # type: ignore[arg-type]

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self._consumer.subscribe(list(self.kinds), listener=_CommitOnRevoke(self))
        await start_client(self._consumer, self._servers, self._security, who=self._principal)

    async def stop(self, *, handled: bool = True) -> None:
        """Commit what was handled (the last item too if ``handled``), leave the group."""
        if handled:
            self._mark_handled()
        try:
            await self.commit()
        finally:
            await self._consumer.stop()  # leaves the group: a restart need not wait for a timeout

    async def __aenter__(self) -> SegmentSubscriber:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        await self.stop(handled=exc_type is None)

    # -- iteration ----------------------------------------------------------------
    def __aiter__(self) -> SegmentSubscriber:
        return self

    async def __anext__(self) -> Item:
        self._mark_handled()
        while True:
            if self._due():
                await self._commit_or_warn()
            if not self._buffer:
                try:
                    batches = await self._consumer.getmany(
                        timeout_ms=int(self.commit_interval * 1000))
                except KafkaError as exc:
                    denied = access_denied(exc, self._security, who=self._principal)
                    if denied is not None:
                        raise denied from exc
                    raise
                for records in batches.values():
                    self._buffer.extend(records)
                continue
            record = self._buffer.popleft()
            item = self._decode(record)
            self._current = record
            if item is not None:
                return item
            self._mark_handled()

    async def commit(self) -> None:
        """Commit the offsets of every handled item of the partitions this member owns."""
        owned = self._consumer.assignment()
        offsets = {tp: o for tp, o in self._handled.items() if tp in owned}
        self._handled = {}
        self._uncommitted = 0
        self._committed_at = time.monotonic()
        if offsets:
            await self._consumer.commit(offsets)

    async def _commit_or_warn(self) -> None:
        try:
            await self.commit()
        except KafkaError as exc:  # e.g. a rebalance under way: those items come again
            log.warning("offset commit failed (%r); uncommitted items will be redelivered", exc)

    # -- internals ------------------------------------------------------------------
    def _mark_handled(self) -> None:
        rec, self._current = self._current, None
        if rec is not None:
            self._handled[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
            self._uncommitted += 1

    def _due(self) -> bool:
        return bool(self._handled) and (
            self._uncommitted >= self.commit_every
            or time.monotonic() - self._committed_at >= self.commit_interval)

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Item | None:
        kind = self.kinds[record.topic]
        try:
            if record.value is None:
                return Tombstone(kind=kind, key=(record.key or b"").decode(), topic=record.topic)
            if kind == "customer":
                return SegmentUpdate.model_validate_json(record.value)
            return CatalogEntry.model_validate_json(record.value)
        except (ValidationError, UnicodeDecodeError) as exc:
            self.invalid += 1
            log.warning("skipping unreadable record %s[%d]@%d: %s", record.topic, record.partition,
                        record.offset, exc)
            return None

    def _forget_partitions(self, revoked: set[TopicPartition]) -> None:
        """Drop buffered records of partitions another member now owns (it re-reads them)."""
        self._buffer = deque(r for r in self._buffer
                             if TopicPartition(r.topic, r.partition) not in revoked)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: SegmentSubscriber) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.sub._commit_or_warn()
        self.sub._forget_partitions(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Nothing to do: consumption resumes at the group's committed offsets."""
