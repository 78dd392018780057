"""The live re-scoring sweep's bounds (streamseg/rescore.py): customers and time per sweep.

The sweep runs beside the events on the same worker. When many customers fall due at once
(after an outage, or a backlog read on the live path) an unbounded sweep takes the worker
from its events for as long as it runs; the time budget hands the rest to the next sweep.
"""

from __future__ import annotations

import asyncio

from streamseg.publish.records import SegmentUpdate
from streamseg.rescore import sweep
from streamseg.settings import Settings


class DueCustomers:
    """``due`` customers to re-score; each batch advances a fake clock by ``batch_s``."""

    def __init__(self, due: int, clock: list[float], batch_s: float) -> None:
        self.due, self.clock, self.batch_s = due, clock, batch_s
        self.batches = 0

    async def rescore_stale(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
        n = min(limit, self.due)
        self.due -= n
        self.batches += 1
        self.clock[0] += self.batch_s
        return n, []


def run(engine: DueCustomers, **bounds: object) -> tuple[int, bool]:
    report = asyncio.run(sweep(engine, older_than_days=1.0, batch=250,  # type: ignore[arg-type]
                               monotonic=lambda: engine.clock[0], **bounds))  # type: ignore[arg-type]
    return report.evaluated, report.cut


def test_a_sweep_stops_when_its_time_is_spent__and_the_next_one_goes_on() -> None:
    clock = [0.0]
    engine = DueCustomers(100_000, clock, batch_s=1 / 16)  # 62.5 ms per batch of 250
    done, cut = run(engine, max_customers=20_000, budget_s=1.0)
    assert (done, cut) == (16 * 250, True)  # 1 s of it: 16 batches, not the 80 of max_customers
    assert clock[0] == 1.0
    done, cut = run(engine, max_customers=20_000, budget_s=1.0)
    assert (done, cut) == (4_000, True) and engine.due == 92_000  # the rest, at the next sweeps


def test_a_sweep_with_time_to_spare__ends_when_nobody_is_due() -> None:
    engine = DueCustomers(600, [0.0], batch_s=0.01)
    assert run(engine, max_customers=20_000, budget_s=1.0) == (600, False)
    assert engine.batches == 3  # 250 + 250 + 100: the short batch says nobody is left
    assert run(engine, max_customers=20_000, budget_s=1.0) == (0, False)


def test_a_sweep_without_a_budget__is_bounded_by_customers_alone() -> None:
    # a step of history: its sweep must not depend on how fast the machine is
    engine = DueCustomers(30_000, [0.0], batch_s=10.0)
    assert run(engine, max_customers=20_000) == (20_000, True)


def test_the_default_budget__is_a_fifth_of_the_sweep_interval() -> None:
    s = Settings()
    assert s.rescore_share * s.rescore_every_s == 1.0
