"""The one small protocol every clusterer is wrapped in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Vector = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which segment a customer belongs to and how far (scaled units) from its centre."""

    segment_id: int
    distance: float


class Segmenter(Protocol):
    """Learns segments online from model-input vectors and assigns customers to them."""

    @property
    def ready(self) -> bool:
        """False while warming up: nothing can be assigned yet."""
        ...

    @property
    def version(self) -> int:
        """Increases whenever the segment definitions change."""
        ...

    def learn(self, x: Vector) -> None: ...

    def end_warmup(self) -> bool:
        """End the warm-up now with the vectors buffered so far (at least ``n_segments`` of them),
        rather than after ``warmup`` vectors; True if the segmenter is ready (it may already be).

        A small stream never reaches ``warmup`` updates: the engine ends its warm-up
        early once enough distinct customers were seen (:mod:`streamseg.segmenting.warmup`).
        """
        ...

    def assign_many(self, xs: Sequence[Vector]) -> list[Assignment]:
        """Nearest segment for each vector (requires ``ready``)."""
        ...

    def centers(self) -> dict[int, dict[str, float]]:
        """Segment centres in standardized units (z-scores of the population)."""
        ...

    def scaler_stats(self) -> tuple[dict[str, float], dict[str, float], float]:
        """Online scaler state: per-feature mean, population variance, vectors seen.

        With :meth:`centers` this lets centres from different workers be brought
        into one scale and merged (see :mod:`streamseg.segmenting.model`).
        """
        ...

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state: never pickled."""
        ...
