"""Planted drift is detected within two windows (engine in-process on real Valkey).

The engine runs the generator's scenario events in batches, the drift windows
follow event time, and every report the worker would publish is kept. Two
scenarios and the stationary control run here, in two processes; ``shrink`` and
another stationary run go through the real worker and broker
(test_drift_worker.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from streamseg.devstack import DevStack
from streamseg.drift.evaluate import ScenarioRun, end_ms, run_scenario
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.generate.scenarios import Scenario
from streamseg.settings import Settings

from .drift_support import (
    CUSTOMERS,
    DAYS,
    END_MS,
    SEED,
    WINDOW,
    WINDOW_MS,
    day,
    drift_settings,
    evaluated,
)

pytestmark = pytest.mark.integration
KINDS = ("persona_shift", "new_persona")
RUNS = ("stationary", *KINDS)


def _run(kind: str, redis_url: str, frozen_model: bool = False) -> ScenarioRun:
    """One scenario run; ``frozen_model``: the first global model stays (no merge or re-fit
    after it), as load_tests/drift_scenarios.py scores the migration forecast."""
    settings = drift_settings(Settings(redis_url=redis_url, key_prefix=f"d{uuid.uuid4().hex[:8]}"))
    if frozen_model:
        settings = settings.replace(model_sync_events=10**9)

    async def go() -> ScenarioRun:
        store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                           dedup_horizon_days=settings.dedup_horizon_days,
                                           retention_days=settings.retention_days)
        try:
            return await run_scenario(settings, store, Scenario(kind), customers=CUSTOMERS,
                                      days=DAYS, end_ms=END_MS, seed=SEED)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def runs(stack: DevStack) -> dict[str, ScenarioRun]:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {k: pool.submit(_run, k, stack.redis_url) for k in RUNS}
        return {k: f.result(timeout=240) for k, f in futures.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_planted_change__alerts_within_two_windows_and_not_before(
    runs: dict[str, ScenarioRun], kind: str
) -> None:
    run = runs[kind]
    weekly = evaluated([r for r in run.reports if r.window == WINDOW])
    assert len(weekly) >= 15, f"too few evaluated reports: {len(weekly)}"
    before = [r for r in weekly if end_ms(r) <= run.change_ms]
    assert before and not [r for r in before if r.alerts], [(r.window_end, r.alerts) for r in before]
    delay = run.detection_delay_s(WINDOW)
    assert delay is not None, "the change was never detected"
    assert delay * 1000 <= 2 * WINDOW_MS
    first = run.first_alert_after_change(WINDOW)
    assert first is not None
    print(f"\n{kind}: change at day {day(run.change_ms):.1f}, first alert in the window ending "
          f"day {day(end_ms(first)):.1f} (delay {delay / 86400:.1f} days): "
          f"{[a.alert for a in first.alerts]}; {run.events} events in {run.seconds:.1f}s")


def test_stationary_run__raises_no_alert_at_all(runs: dict[str, ScenarioRun]) -> None:
    run = runs["stationary"]
    reports = evaluated(run.reports)
    assert len([r for r in reports if r.window == WINDOW]) >= 15
    assert not [r for r in reports if r.alerts], [(r.window_end, [a.detail for a in r.alerts])
                                                   for r in reports if r.alerts]
