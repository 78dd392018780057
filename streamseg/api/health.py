"""Readiness checks: is the broker reachable, is Redis, is the model warmed up?

The broker check keeps one small Kafka client connection of its own and asks
it for a live connection to a broker per call: cheap while connected (no round
trip), and a dead broker fails it within the timeout, as the worker's own
consumer would find.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class BrokerProbe:
    """``await probe.reachable()``: True if a broker answers on a live connection."""

    def __init__(self, bootstrap: list[str], timeout: float = 2.0, *,
                 security: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.security = dict(security or {})  # aiokafka TLS/SASL options (kafka_security)
        self._client: AIOKafkaClient | None = None

    async def reachable(self) -> bool:
        try:
            client = self._client or await self._connect()
            node = client.get_random_node()
            return node is not None and bool(
                await asyncio.wait_for(client.ready(node), self.timeout))
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("broker unreachable: %r", exc)
            return False

    async def _connect(self) -> AIOKafkaClient:
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap,
                                request_timeout_ms=int(self.timeout * 1000), **self.security)
        try:
            await asyncio.wait_for(client.bootstrap(), self.timeout)
        except BaseException:
            await client.close()
            raise
        self._client = client
        return client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
