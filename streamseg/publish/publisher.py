"""What the engine and the leader publish through: records out, awaited until the broker has them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

OutRecord = tuple[str, bytes | None, bytes | None]  # topic, key, value (None = tombstone)


class Publisher(Protocol):
    """Sends records to Kafka and returns once the broker has them all."""

    async def publish(self, records: Sequence[OutRecord]) -> None: ...
