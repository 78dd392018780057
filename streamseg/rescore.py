"""The re-scoring sweep: bring silent customers' segments up to "now".

A customer's segment is evaluated when one of its events arrives. Recency
features (days since the last activity or purchase, the decayed 30-day
counters) keep changing while a customer is silent, so without a sweep a
customer who lapses keeps the segment of their last active day forever: the
"lapsing" segment could never fill. The store keeps a sorted set of customers
by the clock time they were last evaluated at (``Keys.scored``); the sweep
reads the oldest, re-derives their features as of now, re-assigns them and
publishes any change, one bounded batch at a time.

Runs on the Faust leader on a timer (``STREAMSEG_RESCORE_EVERY_S``), or, while
the engine reads history, at each event-time step (:func:`sweep_held`, see
:mod:`streamseg.leader.pace`); the benchmark and tests call :func:`sweep` directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from streamseg.publish.records import SegmentUpdate
from streamseg.timeunits import DAY_MS

if TYPE_CHECKING:
    import faust

    from streamseg.metrics import Metrics
    from streamseg.settings import Settings
    from streamseg.ticks import Ticks


class Rescorable(Protocol):
    async def rescore_stale(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]: ...


class HeldRescorable(Protocol):
    async def rescore_held(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]: ...


@dataclass(frozen=True, slots=True)
class _Held:
    """An engine's rescoring for a caller that holds its lock already (a step of history)."""

    engine: HeldRescorable

    async def rescore_stale(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
        return await self.engine.rescore_held(older_than_ms=older_than_ms, limit=limit)


@dataclass(slots=True)
class SweepReport:
    evaluated: int = 0
    changed: int = 0
    #: stopped with customers still due: ``max_customers`` or the time budget ran out
    cut: bool = False


async def sweep(engine: Rescorable, *, older_than_days: float, batch: int,
                max_customers: int | None = None, budget_s: float | None = None,
                monotonic: Callable[[], float] = time.monotonic) -> SweepReport:
    """Re-evaluate stale customers in batches until none are left (or ``max_customers``, or
    ``budget_s`` seconds spent: the rest waits for the next sweep).

    Each batch marks its customers as evaluated now, so the loop ends; the bounds
    keep one timer tick from taking the worker from its events for long.
    """
    report = SweepReport()
    started = monotonic()
    while True:
        if (max_customers is not None and report.evaluated >= max_customers) or \
                (budget_s is not None and monotonic() - started >= budget_s):
            report.cut = True
            break
        limit = batch if max_customers is None else min(batch, max_customers - report.evaluated)
        n, changes = await engine.rescore_stale(older_than_ms=older_than_days * DAY_MS, limit=limit)
        report.evaluated += n
        report.changed += len(changes)
        if n < limit:
            break
    return report


async def sweep_held(engine: HeldRescorable, settings: Settings) -> SweepReport:
    """:func:`sweep` with the settings' bounds, for a caller holding the engine's lock."""
    return await sweep(_Held(engine), older_than_days=settings.rescore_after_hours / 24.0,
                       batch=settings.rescore_batch, max_customers=settings.rescore_max)


def register(app: faust.App, engine: Rescorable, settings: Settings, ticks: Ticks,
             metrics: Metrics, reading_history: Callable[[], bool] = lambda: False) -> None:
    """Run :func:`sweep` on the Faust leader every ``rescore_every_s`` for at most
    ``rescore_share`` of that time, except while ``reading_history`` (the steps of history
    sweep then, uncut)."""

    @ticks.every(app, settings.rescore_every_s, "re-scoring sweep", on_leader=True,
                 level=logging.ERROR, traceback=True)
    async def rescore_stale_customers() -> None:
        if reading_history():
            return
        report = await sweep(engine, older_than_days=settings.rescore_after_hours / 24.0,
                             batch=settings.rescore_batch, max_customers=settings.rescore_max,
                             budget_s=settings.rescore_share * settings.rescore_every_s)
        metrics.rescored.inc(report.evaluated)
        if report.cut:
            metrics.rescore_cut.inc()
