"""Shared set-up for the drift tests: one scenario configuration, one reading of "detected"."""

from __future__ import annotations

from streamseg.drift import DriftReport
from streamseg.drift.evaluate import end_ms
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS

END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: every simulated event is in the past
DAYS = 70
CUSTOMERS = 1000
SEED = 5
START_MS = END_MS - DAYS * DAY_MS
WINDOW = "1w"
WINDOW_MS = 7 * DAY_MS
#: The steady population is in a steady state from half-way; a report counts once
#: its reference window starts there too.
EVALUATED_FROM_MS = START_MS + DAYS // 2 * DAY_MS + 2 * WINDOW_MS


def drift_settings(base: Settings) -> Settings:
    """Day-hopping 7-day windows on event time; 1-day windows hold ~200 customer updates
    here, below ``drift_min_customers``, so only the weekly ones report. Five segments
    for five personas and a slow KMeans (halflife 0.01) keep the model from wandering.
    One partition per input topic keeps the worker's inputs in event-time step. A
    14-day retention (event time, in the leader's re-fit sample) keeps customers who
    left the steady population from piling up in the re-fit: the population it sees
    is steady too (with all 70 days of leavers the re-fit moved the centres to them)."""
    return base.model_copy(update={
        "drift_windows": "1d,7d", "drift_min_customers": 500, "n_segments": 5,
        "kmeans_halflife": 0.01, "model_warmup": 300, "topic_partitions": 1, "retention_days": 14.0,
    })


def evaluated(reports: list[DriftReport]) -> list[DriftReport]:
    return [r for r in reports if end_ms(r) >= EVALUATED_FROM_MS]


def day(ms: int) -> float:
    return (ms - START_MS) / DAY_MS
