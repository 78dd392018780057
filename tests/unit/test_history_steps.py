"""The leader's steps of history (streamseg/leader/pace.py, docs/model.md "Replays"): the re-fit
standardizes with the customers as they are, and the end of a history is a step of its own."""

from __future__ import annotations

import asyncio

import numpy as np
from prometheus_client import CollectorRegistry
from sklearn.metrics import adjusted_rand_score

from streamseg.drift import DriftConfig, DriftMonitor
from streamseg.features.registry import MODEL_FEATURES
from streamseg.leader import Leader
from streamseg.leader.pace import HISTORY_IDLE_MS, Pace
from streamseg.metrics import Metrics
from streamseg.segmenting.assign import Assigner
from streamseg.segmenting.model import SegmentModel
from streamseg.segmenting.vectors import pairwise_sq_dist, signal_var
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS, HOUR_MS


class RawSample:
    """A customer sample of raw model inputs (what the leader's sample process holds)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.reseed = False

    def __len__(self) -> int:
        return len(self.rows)

    async def scaler(self, model: SegmentModel) -> tuple[np.ndarray, np.ndarray]:
        mean = self.rows.mean(0)
        return mean, signal_var(mean, self.rows.var(0))

    async def fit(self, model: SegmentModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return model.refine(self.rows, seed=seed)

    async def release(self) -> None:
        """Nothing held."""


def test_history_step_refit__weighs_inputs_by_how_they_vary_now_not_on_the_first_day() -> None:
    # two planted groups apart in "spend"; "recency" is noise. On the history's first day
    # everyone had just bought (recency spread of minutes) and spend varied widely: the model's
    # scaler, which no merge updates between steps, still says so. 60 days on, recency spreads
    # over weeks and, in that frozen scale, outweighs spend hundreds of times over.
    rng = np.random.default_rng(5)
    groups = np.repeat([0, 1], 300)
    spend = np.where(groups == 1, 300.0, 20.0) + rng.normal(0, 10, 600)
    recency = rng.uniform(0, 60, 600)
    rows = np.column_stack([spend, recency])
    frozen_mean, frozen_var = np.array([150.0, 0.01]), np.array([140.0**2, 0.01**2])
    start = np.array([[-1.0, 0.0], [1.0, 0.0]])  # the first day's groups, in its scale
    model = SegmentModel.first(["spend", "recency"], frozen_mean, frozen_var, start, np.ones(2))
    cfg = Settings(n_segments=2)
    drift = DriftMonitor(DriftConfig.from_settings(cfg), MODEL_FEATURES)
    assigner = Assigner(cfg.segment_margin, Metrics(CollectorRegistry()), drift, lambda m: None)
    assigner.adopt(model)
    leader = Leader(cfg, None, None, None, assigner, None)  # type: ignore[arg-type]

    proposal = asyncio.run(leader.refine(RawSample(rows), rescale=True))  # type: ignore[arg-type]

    assert proposal is not None
    nxt, _ = proposal
    labels = pairwise_sq_dist(nxt.scale(rows), nxt.centers).argmin(1)
    assert adjusted_rand_score(groups, labels) > 0.95  # the planted groups, split on spend
    assert sorted(nxt.ids) == [0, 1]  # the same two segments, re-fitted: no id born or retired


def test_pace__reports_the_end_of_a_history_once_and_only_after_history() -> None:
    wall = [100 * DAY_MS]
    pace = Pace("event", step_hours=24.0, wall_ms=lambda: wall[0])
    assert not pace.drained()  # nothing read yet
    pace.cut([wall[0] - 30 * DAY_MS])  # a batch of history
    assert pace.history and not pace.drained()  # still reading it
    wall[0] += HISTORY_IDLE_MS + 1
    assert not pace.history and pace.drained()  # idle: the history has ended, once
    assert not pace.drained()
    pace.cut([wall[0] - 20 * DAY_MS])  # another stretch of history (a backlog) ends again
    wall[0] += HISTORY_IDLE_MS + 1
    assert pace.drained()
    live = Pace("event", step_hours=24.0, wall_ms=lambda: wall[0])
    live.cut([wall[0] - HOUR_MS / 3600])  # live events: no history, no end of one
    wall[0] += HISTORY_IDLE_MS + 1
    assert not live.drained()
