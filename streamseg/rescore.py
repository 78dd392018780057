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

The live sweep holds the engine's lock for one batch at a time and then pauses, so
that it takes at most ``STREAMSEG_RESCORE_SHARE`` of the worker's time batch by batch:
an event waits behind one batch of the sweep at most. Without the pauses, a sweep
that found thousands of customers due took the lock for a second in a row, batch
after batch, and every event that arrived meanwhile waited for it (the engine's
p99 at 3,400 events/s was 470-900 ms with the sweep, 90-270 ms without it:
``docs/performance.md``, "The sweep's share, batch by batch").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from streamseg.publish.records import SegmentUpdate
from streamseg.timeunits import DAY_MS

if TYPE_CHECKING:
    import faust

    from streamseg.metrics import Metrics
    from streamseg.settings import Settings
    from streamseg.ticks import Ticks


class HeldRescorable(Protocol):
    async def rescore_held(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]: ...


class Rescorable(HeldRescorable, Protocol):
    @property
    def lock(self) -> AbstractAsyncContextManager[object]: ...


@dataclass(frozen=True, slots=True)
class _Held:
    """An engine's rescoring for a caller that holds its lock already (a step of history)."""

    engine: HeldRescorable

    @property
    def lock(self) -> AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    async def rescore_held(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
        return await self.engine.rescore_held(older_than_ms=older_than_ms, limit=limit)


@dataclass(slots=True)
class SweepReport:
    evaluated: int = 0
    changed: int = 0
    #: stopped with customers still due: ``max_customers`` ran out
    cut: bool = False
    #: seconds spent in the batches themselves (the engine's lock held), pauses not counted
    busy_s: float = 0.0


async def sweep(engine: Rescorable, *, older_than_days: float, batch: int,
                max_customers: int | None = None, share: float | None = None,
                halt: Callable[[], bool] = lambda: False,
                counted: Callable[[int], object] = lambda n: None,
                monotonic: Callable[[], float] = time.monotonic,
                pause: Callable[[float], Awaitable[object]] = asyncio.sleep) -> SweepReport:
    """Re-evaluate stale customers in batches until none are left (or ``max_customers``:
    the rest waits for the next sweep).

    ``share`` (0 < share <= 1) paces the sweep: after a batch that took ``d`` seconds it
    pauses ``d * (1 - share) / share``, so it never takes more than that share of the
    worker's time, and the events in between wait behind one batch, not behind the
    whole sweep. ``halt`` ends it before the next batch when it returns True (the engine
    began reading history, which sweeps at its own steps). ``counted`` is told each batch's
    customers as it ends: a paced sweep can run for many seconds. Each batch marks its
    customers as evaluated now, so the loop ends.
    """
    report = SweepReport()
    while not halt():
        limit = batch if max_customers is None else min(batch, max_customers - report.evaluated)
        async with engine.lock:  # timed once held: waiting for the events' batch is not the sweep's
            if halt():  # asked while it waited: the batch before may have begun reading history
                break
            started = monotonic()
            n, changes = await engine.rescore_held(older_than_ms=older_than_days * DAY_MS, limit=limit)
            spent = monotonic() - started
        report.busy_s += spent
        report.evaluated += n
        counted(n)
        report.changed += len(changes)
        if n < limit:
            break
        if max_customers is not None and report.evaluated >= max_customers:
            report.cut = True
            break
        if share is not None and share < 1.0:
            await pause(spent * (1.0 - share) / share)
    return report


async def sweep_held(engine: HeldRescorable, settings: Settings) -> SweepReport:
    """:func:`sweep` with the settings' bounds, for a caller holding the engine's lock."""
    return await sweep(_Held(engine), older_than_days=settings.rescore_after_hours / 24.0,
                       batch=settings.rescore_batch, max_customers=settings.rescore_max)


def register(app: faust.App, engine: Rescorable, settings: Settings, ticks: Ticks,
             metrics: Metrics, reading_history: Callable[[], bool] = lambda: False) -> None:
    """Every ``rescore_every_s`` on the Faust leader, start a :func:`sweep` paced to
    ``rescore_share`` of the worker's time unless one is still under way.

    A paced sweep of many customers outlasts the interval, so it runs beside the timer
    (a future of the app: cancelled when the worker stops) instead of in its tick, which
    Faust would report as overlapping. It ends early when this worker stops leading (the
    new leader sweeps), when the worker stops, or when the engine begins reading history
    (whose steps sweep on their own, unpaced).
    """
    under_way: list[asyncio.Future[bool]] = []

    def halt() -> bool:
        return reading_history() or not app.is_leader() or app.should_stop

    async def sweep_due() -> None:
        report = await sweep(engine, older_than_days=settings.rescore_after_hours / 24.0,
                             batch=settings.rescore_batch, max_customers=settings.rescore_max,
                             share=settings.rescore_share, halt=halt, counted=metrics.rescored.inc)
        if report.cut:
            metrics.rescore_cut.inc()

    @ticks.every(app, settings.rescore_every_s, "re-scoring sweep", on_leader=True,
                 level=logging.ERROR, traceback=True)
    async def rescore_stale_customers() -> None:
        if reading_history() or (under_way and not under_way[0].done()):
            return
        under_way[:] = [app.add_future(ticks.attempt("re-scoring sweep", sweep_due, timer="rescore_stale_customers",
                                                     level=logging.ERROR, traceback=True))]
