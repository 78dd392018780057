"""Erasure of one customer's data (GDPR right to be forgotten).

One service behind both ``DELETE /v1/customers/{id}`` (inside a worker) and
``streamseg forget ID`` (stand-alone). It removes, in this order:

1. Redis: the customer's state hash (features, membership, reasons), its
   history of segment changes and its dedup set; the removed membership's
   segment size is decremented.
2. Memory: whatever the local engine still holds for the customer (warm-up).
3. Kafka: a tombstone (key = customer id, value = null) on every compacted
   topic keyed by customer id, so compaction drops the customer's records,
   then an :class:`~streamseg.publish.records.ErasureAudit` record on the
   audit topic (who, when, what was removed).

Ordering guarantee: inside a worker, erasure holds the same lock as the batch
loop, so it happens after any batch that worker has in flight and before the
next; events consumed afterwards, even ones produced before the erasure, start
from nothing (their ids were forgotten too). Erasure is idempotent: if it
fails half-way (Kafka unreachable), run it again: what the first attempt
removed is kept in Redis until an audit record is out, so the retry's record
still says what was removed. The API (``check_broker``, as ``streamseg forget``
at its start) asks the broker before erasing, so an unreachable or refusing
broker leaves Redis untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import TypeAdapter, ValidationError

from streamseg.errors import StoreUnavailable, StreamsegError
from streamseg.events.models import CustomerId
from streamseg.features.store import Forgotten
from streamseg.publish.records import ErasureAudit, now_iso
from streamseg.settings import Settings

if TYPE_CHECKING:  # the engine pulls in River: keep this module light for the CLI and API
    from streamseg.engine import OutRecord, Publisher

PUBLISH_TIMEOUT_S = 15.0


class ErasureIncomplete(StreamsegError):
    """Redis data is gone but the tombstones or audit record were not published: retry."""


class InvalidCustomerId(StreamsegError):
    """Not a customer id the input contract accepts (1-128 characters, no control characters)."""


_CUSTOMER_ID: TypeAdapter[str] = TypeAdapter(CustomerId)


def check_customer_id(customer_id: str) -> str:
    """``customer_id`` if the input contract accepts it, else :class:`InvalidCustomerId`."""
    try:
        return _CUSTOMER_ID.validate_python(customer_id)
    except ValidationError:
        raise InvalidCustomerId("customer ids are 1-128 characters without control "
                                "characters") from None


class BrokerUnavailable(StreamsegError):
    """No Kafka broker answered before the erasure began: nothing was erased, retry."""


class ErasableStore(Protocol):
    async def forget(self, customer_id: str) -> Forgotten: ...

    async def forget_done(self, customer_id: str) -> None: ...


async def check_broker(settings: Settings) -> None:
    """Raise unless a broker answers and lets this client see the topics an erasure writes.

    Run before any data is removed, so a broker that is away (:class:`BrokerUnavailable`)
    or refuses us (:class:`~streamseg.kafka_security.KafkaAccessDenied`) leaves Redis untouched.
    """
    from streamseg.kafka_security import check_settings_access

    if not await check_settings_access(settings, topics=[*tombstone_topics(settings),
                                                         settings.topic_audit]):
        raise BrokerUnavailable(f"no Kafka broker answered at {settings.kafka_bootstrap}; "
                                "nothing was erased, retry")


def tombstone_topics(settings: Settings) -> list[str]:
    """The compacted topics keyed by customer id: a tombstone there erases the customer."""
    return [settings.topic_segment_updates]


class Eraser:
    """Erases customers; ``lock`` is the batch loop's lock when run inside a worker."""

    def __init__(
        self,
        settings: Settings,
        store: ErasableStore,
        publisher: Publisher,
        *,
        lock: asyncio.Lock | None = None,
        on_forget: Callable[[str], None] = lambda _cid: None,
        preflight: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.lock = lock or asyncio.Lock()
        self.on_forget = on_forget
        self.preflight = preflight  # e.g. check_broker: raises before anything is erased

    async def forget(self, customer_id: str, *, actor: str,
                     via: Literal["http", "cli"]) -> ErasureAudit:
        """Erase one customer; returns the audit record that was published."""
        check_customer_id(customer_id)
        if self.preflight is not None:
            await self.preflight()
        async with self.lock:  # the publish too: a later batch's update must follow the tombstone
            gone = await self.store.forget(customer_id)
            self.on_forget(customer_id)
            audit = self._audit(customer_id, actor, via, gone)
            key = customer_id.encode()
            records: list[OutRecord] = [(t, key, None) for t in audit.tombstoned_topics]
            records.append((self.settings.topic_audit, key, audit.to_bytes()))
            await self._publish(records)
        with contextlib.suppress(StoreUnavailable):  # done; the note would only expire
            await self.store.forget_done(customer_id)
        return audit

    def _audit(self, customer_id: str, actor: str, via: Literal["http", "cli"],
               gone: Forgotten) -> ErasureAudit:
        return ErasureAudit(
            customer_id=customer_id, actor=actor, via=via, at=now_iso(),
            removed_keys=gone.removed_keys, had_membership=gone.segment_id is not None,
            segment_id=gone.segment_id, tombstoned_topics=tombstone_topics(self.settings),
        )

    async def _publish(self, records: Sequence[OutRecord]) -> None:
        try:
            await asyncio.wait_for(self.publisher.publish(records), PUBLISH_TIMEOUT_S)
        except Exception as exc:
            raise ErasureIncomplete(
                "the customer's Redis data was removed but the tombstones and audit record "
                f"could not be published ({exc!r}); retry the erasure") from exc


@contextlib.asynccontextmanager
async def standalone_eraser(settings: Settings) -> AsyncIterator[Eraser]:
    """An :class:`Eraser` with its own Redis client and Kafka producer (for the CLI).

    The producer connects, and the cluster is asked whether this client may
    see the topics it will write, before any data is removed: a refused
    password or a missing ACL raises
    :class:`~streamseg.kafka_security.KafkaAccessDenied` with Redis untouched.
    """
    from streamseg.features.keys import Keys
    from streamseg.features.store import RedisFeatureStore
    from streamseg.kafka_security import check_settings_access, client_options, principal
    from streamseg.publish.kafka import KafkaPublisher

    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    try:
        # the topics first: an idempotent producer's start asks for a producer id, and a
        # principal without any ACL would be told of a cluster refusal, not of the topic
        await check_settings_access(
            settings, topics=[*tombstone_topics(settings), settings.topic_audit])
        async with KafkaPublisher(settings.kafka_bootstrap_list, client_options(settings),
                                  who=principal(settings),
                                  idempotent=settings.kafka_idempotence) as publisher:
            yield Eraser(settings, store, publisher)
    finally:
        await store.close()
