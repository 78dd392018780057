"""Planted drift is detected within two windows (engine in-process on real Valkey).

The engine runs the generator's scenario events in batches, the drift windows
follow event time, and every report the worker would publish is kept. Two
scenarios and the stationary control run here, in two processes; ``shrink`` and
stationary runs on three seeds with the leader re-fitting every REFIT_EVERY
batches (as a worker's leader does: ~every 30 batches in test_drift_worker.py)
check that a shrinking persona is detected however the re-fits move the centres,
and that no alert type fires on more than 5% of a stationary stream's windows.
``shrink`` and another stationary run also go through the real worker and
broker (test_drift_worker.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from streamseg.devstack import DevStack
from streamseg.drift import ALERT_NAMES
from streamseg.drift.evaluate import ScenarioRun, end_ms, forecast_errors, run_scenario
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

#: the nine runs happen in the first test's setup: 63 s on two cores on 2026-12-07 (303 s in a
#: CI rehearsal the same day, before run_scenario stopped starting value fits it never used);
#: each run is bounded by its own wait
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
KINDS = ("persona_shift", "new_persona")
RUNS = ("stationary", *KINDS)
SEEDS = (5, 6, 7)
REFIT_EVERY = 30  # batches of 500 events
#: (kind, seed) run with re-fits
REFIT_RUNS = tuple((k, s) for k in ("shrink", "stationary") for s in SEEDS)
FALSE_ALARM_RATE = 0.05  # of the stationary windows, per alert type


def _run(kind: str, redis_url: str, seed: int = SEED, refit_every: int = 0,
         frozen_model: bool = False, value_model: bool = False) -> ScenarioRun:
    """One scenario run; ``refit_every``: leader re-fits every that many batches;
    ``frozen_model``: the first global model stays (no merge or re-fit after it);
    ``value_model``: the value model re-fitted before each of those, and the re-scoring
    sweep after every batch (see :func:`run_scenario`)."""
    settings = drift_settings(Settings(redis_url=redis_url, key_prefix=f"d{uuid.uuid4().hex[:8]}"))
    if frozen_model:
        settings = settings.replace(model_sync_events=10**9)

    async def go() -> ScenarioRun:
        store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                           dedup_horizon_days=settings.dedup_horizon_days,
                                           retention_days=settings.retention_days)
        try:
            return await run_scenario(settings, store, Scenario(kind), customers=CUSTOMERS,
                                      days=DAYS, end_ms=END_MS, seed=seed,
                                      refit_every=refit_every, value_model=value_model)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def all_runs(stack: DevStack) -> dict[tuple[str, int, int], ScenarioRun]:
    """(kind, seed, re-fit every) -> run: RUNS without re-fits, REFIT_RUNS with them."""
    plan = [(k, SEED, 0) for k in RUNS] + [(k, s, REFIT_EVERY) for k, s in REFIT_RUNS]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {p: pool.submit(_run, p[0], stack.redis_url, p[1], p[2]) for p in plan}
        return {p: f.result(timeout=400) for p, f in futures.items()}


@pytest.fixture(scope="module")
def runs(all_runs: dict[tuple[str, int, int], ScenarioRun]) -> dict[str, ScenarioRun]:
    return {k: all_runs[k, SEED, 0] for k in RUNS}


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


@pytest.mark.parametrize("seed", SEEDS)
def test_shrinking_persona_with_leader_refits__alerts_within_two_windows(
    all_runs: dict[tuple[str, int, int], ScenarioRun], seed: int
) -> None:
    """Re-fits during a shrink let the centres follow the customers who stay, so the mix
    barely moves; the population_shrink alert sees the customers who went silent."""
    run = all_runs["shrink", seed, REFIT_EVERY]
    weekly = evaluated([r for r in run.reports if r.window == WINDOW])
    before = [r for r in weekly if end_ms(r) <= run.change_ms]
    assert before and not [r for r in before if r.alerts], [(r.window_end, r.alerts) for r in before]
    first = run.first_alert_after_change(WINDOW)
    assert first is not None, "the shrink was never detected"
    assert end_ms(first) - run.change_ms <= 2 * WINDOW_MS
    (alert,) = [a for a in first.alerts if a.alert == "population_shrink"]
    assert "lost most: " in alert.detail, alert.detail
    print(f"\nshrink seed {seed}: first alert in the window ending day {day(end_ms(first)):.1f} "
          f"(change day {day(run.change_ms):.1f}): {[a.detail for a in first.alerts]}")


def test_stationary_with_leader_refits__no_alert_type_fires_on_over_5pct_of_windows(
    all_runs: dict[tuple[str, int, int], ScenarioRun]
) -> None:
    weekly = [r for s in SEEDS for r in evaluated(all_runs["stationary", s, REFIT_EVERY].reports)
              if r.window == WINDOW]
    assert len(weekly) >= 20 * len(SEEDS), len(weekly)
    for name in ALERT_NAMES:
        firing = [r for r in weekly if name in {a.alert for a in r.alerts}]
        assert len(firing) <= FALSE_ALARM_RATE * len(weekly), (
            name, [(r.window_end, [a.detail for a in r.alerts]) for r in firing])


def test_migration_forecast__beats_no_change_one_window_ahead_when_customers_move(
    runs: dict[str, ScenarioRun]
) -> None:
    """persona_shift: customers move between segments for weeks after the change; the
    Markov forecast of the segments' active customers follows them, "no change" does not."""
    weekly = [r for r in runs["persona_shift"].reports if r.window == WINDOW]
    errors = forecast_errors(weekly, scored=evaluated(weekly))
    print(f"\npersona_shift forecast MAE (share points, Markov / no change): {errors}")
    assert errors["pairs"] >= 10, errors
    assert errors["markov_1"] < errors["no_change_1"], errors
