"""Replay a generator scenario through the engine in-process and time the detection.

Used by the scenario tests and ``load_tests/drift_scenarios.py``: the engine runs
on a real store, event time drives the windows, and every drift report the
engine would publish is kept, so the delay from the planted change to the
first alert can be read off.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from prometheus_client import CollectorRegistry

from streamseg.drift.forecast import mean_abs_error
from streamseg.drift.report import DriftReport
from streamseg.engine import Engine, InMessage, OutRecord, build_segmenter
from streamseg.features.store import FeatureStore
from streamseg.generate.personas import simulate
from streamseg.generate.scenarios import Scenario
from streamseg.metrics import Metrics
from streamseg.rescore import sweep
from streamseg.settings import Settings


class _Discard:
    """A publisher that drops everything: only the drift reports matter here."""

    async def publish(self, records: Sequence[OutRecord]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    scenario: Scenario
    change_ms: int
    reports: list[DriftReport]
    events: int
    seconds: float

    def alerting(self, window: str | None = None) -> list[DriftReport]:
        return [r for r in self.reports if r.alerts and (window is None or r.window == window)]

    def first_alert_after_change(self, window: str) -> DriftReport | None:
        return next((r for r in self.alerting(window) if end_ms(r) > self.change_ms), None)

    def detection_delay_s(self, window: str) -> float | None:
        """Event-time seconds from the change to the end of the first alerting window."""
        first = self.first_alert_after_change(window)
        return None if first is None else (end_ms(first) - self.change_ms) / 1000.0


def end_ms(report: DriftReport) -> int:
    return int(datetime.fromisoformat(report.window_end).timestamp() * 1000)


def forecast_errors(reports: Sequence[DriftReport], *, scored: Sequence[DriftReport] | None = None,
                    same_model: bool = False) -> dict[str, float | int]:
    """Mean absolute error (share points) of the reports' one- and two-window forecasts
    against the active_share reported for those windows later in the run, next to the
    "no change" forecast (the origin window's active_share) on the same pairs.

    ``reports``: one window length; a report is scored where the window it forecast
    was reported too. ``scored``: only these origins (default: all). ``same_model``:
    only pairs whose later window was read with the same model version (a re-fit in
    between re-reads the later window with other segment boundaries, which no
    migration forecast can foresee)."""
    by_end = {end_ms(r): r for r in reports}
    errors: dict[str, list[float]] = {}
    for r in reports if scored is None else scored:
        now = {s.segment_id: s.active_share for s in r.segments}
        ahead = [{f.segment_id: f.one_window_ahead for f in r.forecast},
                 {f.segment_id: f.two_windows_ahead for f in r.forecast}]
        for h, predicted in enumerate(ahead, 1):
            later = by_end.get(end_ms(r) + h * r.window_seconds * 1000)
            if later is None or not predicted or (same_model
                                                  and later.model_version != r.model_version):
                continue
            actual = {s.segment_id: s.active_share for s in later.segments}
            errors.setdefault(f"markov_{h}", []).append(mean_abs_error(predicted, actual))
            errors.setdefault(f"no_change_{h}", []).append(mean_abs_error(now, actual))
    out: dict[str, float | int] = {k: sum(v) / len(v) for k, v in sorted(errors.items())}
    out["pairs"] = len(errors.get("markov_1", []))
    out.update({f"pairs_{h}": len(errors.get(f"markov_{h}", [])) for h in (1, 2)})
    return out


async def run_scenario(
    settings: Settings, store: FeatureStore, scenario: Scenario, *, customers: int, days: float,
    end_ms: int, seed: int, refit_every: int = 0, value_model: bool = False,
) -> ScenarioRun:
    """Feed ``scenario``'s events through a fresh engine in batches of ``settings.batch_max``;
    ``refit_every``: the leader re-fits the model every that many batches (0: never), as a
    worker's leader does every ``model_sync_s``; ``value_model``: the value model as a
    worker's leader keeps it: re-fitted just before each of those re-fits (awaited: its own
    timer's background fit, at most every ``value_refit_s`` wall seconds, would land
    anywhere or nowhere in a fast run), and silent customers re-scored by the sweep after
    every batch, so their churn risk rises while they are silent. Without ``value_model``
    no value fit runs at all: one started by a re-fit (in a thread, 40 s on two cores) would
    land anywhere or nowhere, and the run's event loop waited for it to end before closing."""
    if not value_model:
        settings = settings.replace(value_fit=False)
    engine = Engine(settings, store, build_segmenter(settings), _Discard(),
                    Metrics(CollectorRegistry()))
    topics = {"clickstream": settings.topic_clickstream, "transactions": settings.topic_transactions}
    truth = scenario.assign(customers, seed)
    reports: list[DriftReport] = []
    batch: list[InMessage] = []
    started, n = time.perf_counter(), 0
    for n, ev in enumerate(simulate(truth, days=days, end_ms=end_ms, seed=seed, scenario=scenario), 1):
        batch.append(InMessage(topics[ev.topic_role], 0, n, ev.customer_id.encode(),
                               orjson.dumps(ev.payload)))
        if len(batch) >= settings.batch_max:
            await engine.process(batch)
            if value_model:
                await sweep(engine, older_than_days=settings.rescore_after_hours / 24.0,
                            batch=settings.rescore_batch, max_customers=settings.rescore_max)
            reports += engine.drift_reports()
            batch = []
            if refit_every and n // settings.batch_max % refit_every == 0 and engine.assigner.model:
                if value_model:
                    await engine.leader.values.refit_with(engine.leader.sample_customers,
                                                          engine.assigner.model)
                await engine.leader.refresh_catalog()
    if batch:
        await engine.process(batch)
        reports += engine.drift_reports()
    return ScenarioRun(scenario, scenario.change_ms(days=days, end_ms=end_ms), reports, n,
                       time.perf_counter() - started)
