"""A stand-alone Kafka publisher for tools that run outside a worker (``streamseg forget``).

Inside a worker, records go through the Faust app's producer
(:class:`streamseg.app.FaustPublisher`); both satisfy
:class:`streamseg.engine.Publisher` and partition by key the same way
(murmur2), so a tombstone lands on the partition of the records it replaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from streamseg.kafka_security import start_client

if TYPE_CHECKING:
    from streamseg.engine import OutRecord


class KafkaPublisher:
    """Publishes with acks from all in-sync replicas; use as an async context manager.

    ``security``: aiokafka security options (:func:`streamseg.kafka_security.client_options`);
    ``who`` names the client's principal in access errors; ``idempotent``: False for
    brokers without InitProducerId (``STREAMSEG_KAFKA_IDEMPOTENCE``).
    """

    def __init__(self, bootstrap: list[str], security: Mapping[str, Any] | None = None, *,
                 who: str | None = None, idempotent: bool = True) -> None:
        self.bootstrap = bootstrap
        self.security = dict(security or {})
        self.who = who
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                          enable_idempotence=idempotent,
                                          request_timeout_ms=10_000, **self.security)

    async def __aenter__(self) -> KafkaPublisher:
        try:
            await start_client(self._producer, self.bootstrap, self.security, who=self.who)
        except BaseException:
            await self._producer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(self, records: Sequence[OutRecord]) -> None:
        futures = [await self._producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
