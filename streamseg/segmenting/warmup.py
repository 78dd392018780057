"""When a worker seeds the first model early, and how far the stream is from it.

A clusterer buffers ``STREAMSEG_MODEL_WARMUP`` customer updates (500) before it
seeds its centres; a small shop may never send that many, and would never get
a segment. So a worker also ends its clusterer's warm-up early, once both

- ``n_segments * model_warmup_per_segment`` (``n_segments_min`` under auto) distinct customers were seen, by
  every worker together (the store's held set, ``Keys.held``, counts them:
  every customer seen before the first model is in it), and
- ``model_warmup_s`` seconds have passed since the worker's first event.

Until the first model exists the progress is reported ("warming up: N of M
customers seen") by ``/readyz``, customer lookups, ``streamseg inspect`` and
the dev view, from the status each worker writes to Redis (:meth:`WarmUp.status`).

>>> w = WarmUp(needed=60, after_ms=30_000)
>>> w.begin(1_000.0); w.customers = 59
>>> w.due(40_000.0), w.text()
(False, 'warming up: 59 of 60 customers seen (the first model needs 60 distinct customers)')
>>> w.customers = 60
>>> w.due(30_999.0), w.due(31_000.0)
(False, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamseg.settings import Settings


@dataclass(slots=True)
class WarmUp:
    """Distinct customers seen against those needed, and the time since the first event."""

    needed: int  # distinct customers the first model needs (k * per segment)
    after_ms: float  # wall time after the first event the warm-up may end early
    customers: int = 0  # distinct customers seen so far, by every worker
    started_ms: float | None = None  # wall time of this worker's first event

    @classmethod
    def from_settings(cls, settings: Settings) -> WarmUp:
        return cls(settings.start_segments * settings.model_warmup_per_segment,
                   settings.model_warmup_s * 1000.0)

    def begin(self, now_ms: float) -> None:
        """An event arrived before the first model: the bounded wait runs from the first."""
        if self.started_ms is None:
            self.started_ms = now_ms

    def due(self, now_ms: float) -> bool:
        """Enough distinct customers, and ``model_warmup_s`` since the first event."""
        return (self.started_ms is not None and self.customers >= self.needed
                and now_ms - self.started_ms >= self.after_ms)

    def status(self) -> dict[str, float]:
        """The progress, for the worker status other processes read (see :func:`warming_up`)."""
        return {"warmup_customers": self.customers, "warmup_needed": self.needed,
                "warmup_s": self.after_ms / 1000.0}

    def text(self) -> str:
        return progress(self.customers, self.needed, self.after_ms / 1000.0)


def progress(customers: int, needed: int, after_s: float) -> str:
    """"warming up: N of M customers seen": N distinct customers seen, M needed for the first model.

    >>> progress(75, 60, 30.0)
    'warming up: 60 of 60 customers seen (the first model follows within 30 s of the first event)'
    """
    if customers < needed:
        return (f"warming up: {customers} of {needed} customers seen "
                f"(the first model needs {needed} distinct customers)")
    return (f"warming up: {needed} of {needed} customers seen "
            f"(the first model follows within {after_s:g} s of the first event)")


def warming_up(statuses: Mapping[str, Mapping[str, float]]) -> str | None:
    """The progress text from the workers' statuses (``Keys.workers``); None once any worker
    has a model, or when no worker reported its warm-up.

    >>> warming_up({"w1": {"model_version": 0, "warmup_customers": 12, "warmup_needed": 60,
    ...                    "warmup_s": 30}})
    'warming up: 12 of 60 customers seen (the first model needs 60 distinct customers)'
    >>> warming_up({"w1": {"model_version": 3}}) is None
    True
    """
    reports = list(statuses.values())
    if any(int(s.get("model_version", 0)) >= 1 for s in reports):
        return None
    warming = [s for s in reports if "warmup_needed" in s]
    if not warming:
        return None
    return progress(max(int(s.get("warmup_customers", 0)) for s in warming),
                    max(int(s["warmup_needed"]) for s in warming),
                    max(float(s.get("warmup_s", 0.0)) for s in warming))
