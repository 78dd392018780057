"""What the engine and the leader publish through: records out, awaited until the broker has them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

OutRecord = tuple[str, bytes | None, bytes | None]  # topic, key, value (None = tombstone)


class Publisher(Protocol):
    """Sends records to Kafka and returns once the broker has them all."""

    async def publish(self, records: Sequence[OutRecord]) -> None: ...


class PartlyPublished(Exception):
    """A publish whose records the broker took only in part: ``taken`` holds the indices of
    those it has. Raised from the refusal that failed the rest (its ``__cause__``), so a
    caller that publishes record by record after a refusal sends only the others again."""

    def __init__(self, taken: set[int], total: int) -> None:
        super().__init__(f"{len(taken)} of {total} records taken, the rest refused")
        self.taken = taken


def taken_before(exc: BaseException) -> set[int]:
    """The indices of records a failed publish got through (see :class:`PartlyPublished`)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, PartlyPublished):
            return cause.taken
        cause = cause.__cause__
    return set()
