"""The live re-scoring sweep's bounds and pace (streamseg/rescore.py).

The sweep runs beside the events on the same worker and holds the engine's lock for one
batch at a time. When many customers fall due at once (after an outage, a backlog, or
every day on a large base) a sweep that ran its batches back to back took the lock for a
second in a row and every event that arrived meanwhile waited for it. The sweep now pauses
after each batch, so it takes at most ``share`` of the worker's time batch by batch.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from streamseg import rescore
from streamseg.metrics import Metrics
from streamseg.publish.records import SegmentUpdate
from streamseg.rescore import sweep
from streamseg.settings import Settings
from streamseg.ticks import Ticks


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class BusyLock:
    """A lock an events' batch holds for ``wait_s`` before the sweep gets it."""

    def __init__(self, clock: Clock, wait_s: float) -> None:
        self.clock, self.wait_s = clock, wait_s

    async def __aenter__(self) -> None:
        self.clock.now += self.wait_s

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None


class DueCustomers:
    """``due`` customers to re-score; each batch advances the clock by ``batch_s``."""

    def __init__(self, due: int, clock: Clock, batch_s: float, lock_wait_s: float = 0.0) -> None:
        self.due, self.clock, self.batch_s = due, clock, batch_s
        self.batches = 0
        self._lock = BusyLock(clock, lock_wait_s)

    @property
    def lock(self) -> AbstractAsyncContextManager[object]:
        return self._lock

    async def rescore_held(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
        n = min(limit, self.due)
        self.due -= n
        self.batches += 1
        self.clock.now += self.batch_s
        return n, []


def run(engine: DueCustomers, *, max_customers: int | None = None,
        share: float | None = None) -> tuple[int, bool]:
    report = asyncio.run(sweep(engine, older_than_days=1.0, batch=250, max_customers=max_customers,
                               share=share, monotonic=engine.clock, pause=engine.clock.pause))
    return report.evaluated, report.cut


def test_a_paced_sweep__pauses_after_each_batch_to_keep_to_its_share() -> None:
    clock = Clock()
    engine = DueCustomers(2_500, clock, batch_s=0.05)
    assert run(engine, share=0.2) == (2_500, False)
    assert engine.batches == 11  # ten full batches, then the empty one that says nobody is left
    # a pause of four batches' time after each full batch: the lock is held 20% of the time
    assert len(clock.pauses) == 10 and all(abs(p - 0.2) < 1e-9 for p in clock.pauses)
    assert abs(clock.now - (11 * 0.05 + 10 * 0.2)) < 1e-9


def test_the_pace__counts_the_batches_not_the_wait_for_the_events_lock() -> None:
    # under load the sweep waits for the events' batch before each of its own: that is the
    # events' time, and counting it would slow the sweep down exactly when it is needed
    clock = Clock()
    engine = DueCustomers(1_000, clock, batch_s=0.05, lock_wait_s=0.5)
    report = asyncio.run(sweep(engine, older_than_days=1.0, batch=250,
                               share=0.5, monotonic=clock, pause=clock.pause))
    assert report.evaluated == 1_000
    assert all(abs(p - 0.05) < 1e-9 for p in clock.pauses) and len(clock.pauses) == 4
    assert abs(report.busy_s - 5 * 0.05) < 1e-9


def test_an_unpaced_sweep__runs_its_batches_back_to_back() -> None:
    # steps of history: their sweep must not depend on how fast the machine is
    clock = Clock()
    engine = DueCustomers(30_000, clock, batch_s=10.0)
    assert run(engine, max_customers=20_000) == (20_000, True)
    assert clock.pauses == []


def test_a_sweep__stops_at_max_customers_and_the_next_one_goes_on() -> None:
    clock = Clock()
    engine = DueCustomers(100_000, clock, batch_s=0.01)
    assert run(engine, max_customers=20_000, share=0.2) == (20_000, True)
    assert run(engine, max_customers=20_000, share=0.2) == (20_000, True)
    assert engine.due == 60_000


def test_a_sweep_with_nobody_left__ends_without_a_pause_and_counts_each_batch_as_it_ends() -> None:
    clock = Clock()
    engine = DueCustomers(600, clock, batch_s=0.01)
    counts: list[int] = []
    report = asyncio.run(sweep(engine, older_than_days=1.0, batch=250, max_customers=20_000, share=0.2,
                               counted=counts.append, monotonic=clock, pause=clock.pause))
    assert (report.evaluated, report.cut) == (600, False)
    assert counts == [250, 250, 100]  # the metric moves during a long paced sweep, not at its end
    assert engine.batches == 3  # 250 + 250 + 100: the short batch says nobody is left
    assert len(clock.pauses) == 2
    assert run(engine, max_customers=20_000, share=0.2) == (0, False)


def test_a_sweep__ends_before_the_next_batch_once_halted() -> None:
    # the engine began reading history, whose steps sweep on their own
    clock = Clock()
    engine = DueCustomers(10_000, clock, batch_s=0.01)
    halted = [False]

    async def halt_after_two() -> None:
        async def pause(seconds: float) -> None:
            await clock.pause(seconds)
            halted[0] = engine.batches >= 2

        report = await sweep(engine, older_than_days=1.0, batch=250, share=0.2,
                             halt=lambda: halted[0], monotonic=clock, pause=pause)
        assert (report.evaluated, report.cut) == (500, False)

    asyncio.run(halt_after_two())
    assert engine.batches == 2


def test_events_get_the_lock_between_the_sweeps_batches() -> None:
    # real asyncio: an events' batch that queues for the lock while a sweep batch holds it
    # runs before the sweep's next batch, which comes after the pause
    order: list[str] = []

    class Engine:
        def __init__(self) -> None:
            self.lock = asyncio.Lock()
            self.due = 300

        async def rescore_held(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
            order.append("sweep")
            await asyncio.sleep(0)  # Redis and Kafka, awaited with the lock held
            n = min(limit, self.due)
            self.due -= n
            return n, []

    async def main() -> None:
        engine = Engine()
        swept = asyncio.Event()

        async def events() -> None:  # a steady stream of batches until the sweep is over
            while not swept.is_set():
                async with engine.lock:
                    order.append("events")
                await asyncio.sleep(0)

        async def sweeping() -> None:
            await sweep(engine, older_than_days=1.0, batch=100, share=0.5)
            swept.set()

        await asyncio.gather(sweeping(), events())

    asyncio.run(main())
    assert order.count("sweep") == 4  # three full batches and the empty one
    pairs = list(itertools.pairwise(order))
    assert ("sweep", "sweep") not in pairs  # never two sweep batches without events between


class LeaderApp:
    """What :func:`streamseg.rescore.register` uses of a Faust app: timers, leadership, futures."""

    def __init__(self) -> None:
        self.ticks: dict[str, Callable[[], Awaitable[None]]] = {}
        self.leader, self.should_stop = True, False
        self.futures: list[asyncio.Future[bool]] = []

    def timer(self, seconds: float, on_leader: bool = False) -> Callable[[Any], Any]:
        def add(fun: Any) -> Any:
            self.ticks[fun.__name__] = fun
            return fun
        return add

    def is_leader(self) -> bool:
        return self.leader

    def add_future(self, coro: Awaitable[bool]) -> asyncio.Future[bool]:
        self.futures.append(asyncio.ensure_future(coro))
        return self.futures[-1]


class Swept:
    """Due customers behind a real lock; ``on_batch`` sees each batch's number."""

    def __init__(self, due: int, on_batch: Callable[[int], None] = lambda n: None) -> None:
        self.lock = asyncio.Lock()
        self.due, self.batches, self.on_batch = due, 0, on_batch

    async def rescore_held(self, *, older_than_ms: float, limit: int) -> tuple[int, list[SegmentUpdate]]:
        await asyncio.sleep(0)  # Redis and Kafka, with the lock held
        n = min(limit, self.due)
        self.due -= n
        self.batches += 1
        self.on_batch(self.batches)
        return n, []


def registered(engine: Swept, reading: list[bool] | None = None) -> tuple[LeaderApp, Metrics]:
    app, metrics = LeaderApp(), Metrics(CollectorRegistry())
    ticks = Ticks(metrics.timer_failures, refused=lambda exc: False)
    rescore.register(app, engine, Settings(rescore_batch=10, rescore_share=0.5, rescore_max=1_000),  # type: ignore[arg-type]
                     ticks, metrics, reading_history=lambda: bool(reading and reading[0]))
    return app, metrics


def test_the_leaders_tick__starts_a_sweep_beside_it_and_none_while_one_is_under_way() -> None:
    engine = Swept(95)

    async def main() -> Metrics:
        app, metrics = registered(engine)
        tick = app.ticks["rescore_stale_customers"]
        await tick()
        await tick()  # the first sweep has not finished: no second one beside it
        assert len(app.futures) == 1
        assert await app.futures[0] is True  # it ran through Ticks.attempt, and succeeded
        await tick()  # nobody is due any more: a sweep of one empty batch
        assert len(app.futures) == 2 and await app.futures[1] is True
        return metrics

    metrics = asyncio.run(main())
    assert engine.due == 0 and engine.batches == 10 + 1
    assert metrics.rescored._value.get() == 95  # counted batch by batch, through the wiring
    assert metrics.rescore_cut._value.get() == 0


def test_a_sweep__ends_when_its_worker_stops_leading_or_begins_reading_history() -> None:
    holder: list[LeaderApp] = []

    def lose_leadership(batch: int) -> None:
        if batch == 2:
            holder[0].leader = False  # a rebalance: the new leader sweeps from here

    engine = Swept(100, lose_leadership)

    async def main() -> Metrics:
        app, metrics = registered(engine)
        holder.append(app)
        await app.ticks["rescore_stale_customers"]()
        await app.futures[0]
        return metrics

    metrics = asyncio.run(main())
    assert engine.batches == 2 and metrics.rescored._value.get() == 20

    reading = [True]
    history = Swept(100)

    async def while_reading() -> LeaderApp:
        app, _ = registered(history, reading)
        await app.ticks["rescore_stale_customers"]()
        return app

    assert asyncio.run(while_reading()).futures == [] and history.batches == 0
