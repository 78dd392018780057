"""A stand-alone Kafka publisher for tools that run outside a worker (``streamseg forget``).

Inside a worker, records go through the Faust app's producer
(:class:`streamseg.app.FaustPublisher`); both satisfy
:class:`streamseg.engine.Publisher` and partition by key the same way
(murmur2), so a tombstone lands on the partition of the records it replaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer

if TYPE_CHECKING:
    from streamseg.engine import OutRecord


class KafkaPublisher:
    """Publishes with acks from all in-sync replicas; use as an async context manager."""

    def __init__(self, bootstrap: list[str]) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                          request_timeout_ms=10_000)

    async def __aenter__(self) -> KafkaPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(self, records: Sequence[OutRecord]) -> None:
        futures = [await self._producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
