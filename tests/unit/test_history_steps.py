"""The leader's steps of history (streamseg/leader/pace.py, docs/model.md "Replays"): the re-fit
standardizes with the customers as they are, and the end of a history is a step of its own."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
from prometheus_client import CollectorRegistry
from sklearn.metrics import adjusted_rand_score

from streamseg.drift import DriftConfig, DriftMonitor
from streamseg.engine import BatchReport, Engine, InMessage, build_segmenter
from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.features.keys import Keys
from streamseg.features.reference import accumulate
from streamseg.features.registry import HALFLIFE_DAYS, MODEL_FEATURES, derive, model_input
from streamseg.features.store import RedisFeatureStore
from streamseg.leader import Leader
from streamseg.leader.pace import HISTORY_BACKLOG_IDLE_MS, HISTORY_IDLE_MS, Pace
from streamseg.metrics import Metrics
from streamseg.segmenting.assign import Assigner
from streamseg.segmenting.model import SegmentModel
from streamseg.segmenting.offload import LocalSample, in_sample_scale
from streamseg.segmenting.vectors import pairwise_sq_dist, signal_var
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS, HOUR_MS


class RawSample:
    """A customer sample of raw model inputs (what the leader's sample process holds)."""

    def __init__(self, rows: np.ndarray, segments: list[int | None]) -> None:
        self.rows = rows
        self.segments = segments  # each customer's current segment

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_train(self) -> int:  # every row is an active customer's
        return len(self.rows)

    async def in_scale(self, model: SegmentModel) -> SegmentModel:
        return in_sample_scale(model, self.rows, self.segments)

    async def fit(self, model: SegmentModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return model.refine(self.rows, seed=seed)

    async def release(self) -> None:
        """Nothing held."""


def leader_of(model: SegmentModel) -> Leader:
    """A leader whose current model is ``model`` (no store or broker: re-fits only)."""
    cfg = Settings(n_segments=len(model.ids))
    drift = DriftMonitor(DriftConfig.from_settings(cfg), MODEL_FEATURES)
    assigner = Assigner(cfg.segment_margin, Metrics(CollectorRegistry()), drift, lambda m: None)
    assigner.adopt(model)
    return Leader(cfg, None, None, None, assigner, None)  # type: ignore[arg-type]


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
    leader = leader_of(model)

    members: list[int | None] = [int(g) for g in groups]  # assigned on the first day
    proposal = asyncio.run(leader.refine(RawSample(rows, members), rescale=True))  # type: ignore[arg-type]

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
    pace.cut([wall[0] - 20 * DAY_MS])  # a backlog caught up, live events at once: it ended too
    pace.cut([wall[0] - 1000.0])
    assert not pace.history and pace.drained()
    live = Pace("event", step_hours=24.0, wall_ms=lambda: wall[0])
    live.cut([wall[0] - HOUR_MS / 3600])  # live events: no history, no end of one
    wall[0] += HISTORY_IDLE_MS + 1
    assert not live.drained()


def burst(cid: str, group: int, base_ms: float) -> list[Event]:
    """One customer's burst of a few hours: big spender (0), browser (1) or bargain hunter (2)."""
    clicks: list[Event] = [ClickEvent.model_validate({
        "event_id": f"{cid}-c{i}", "customer_id": cid, "ts": base_ms + i * 60_000,
        "type": "product_view", "session_id": f"{cid}-s{i // 5}"}) for i in range(5 + 10 * (group == 1))]
    return clicks + [TransactionEvent.model_validate({
        "event_id": f"{cid}-o{i}", "customer_id": cid, "ts": base_ms + i * HOUR_MS,
        "amount": 300.0 if group == 0 else 20.0, "currency": "EUR",
        "discount_amount": 15.0 if group == 2 else 0.0}) for i in range(1 + 5 * (group == 0))]


def inputs_at(history: dict[str, list[Event]], now_ms: float) -> np.ndarray:
    states = {c: accumulate(evs, horizon_ms=400 * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
              for c, evs in history.items()}
    return np.array([[model_input(derive(states[c], now_ms))[f] for f in MODEL_FEATURES]
                     for c in sorted(history)])


def test_history_step_days_after_a_burst__keeps_every_segment_id() -> None:
    # three behaviours in a burst of a few hours; the next step comes ten days later, when
    # everyone has aged alike. In the sample's scale recency varies by hours, so the old centres
    # (recency 0) lie hundreds of units from the new ones: matched on centres, every segment was
    # renumbered; matched on where their members stand now, none is.
    base = 1_767_225_600_000.0
    history = {f"c{c:02d}": burst(f"c{c:02d}", c % 3, base) for c in range(30)}
    groups = [int(c[1:]) % 3 for c in sorted(history)]
    x0 = inputs_at(history, base + 5 * HOUR_MS)
    mean = x0.mean(0)
    first = SegmentModel.first(MODEL_FEATURES, mean, signal_var(mean, x0.var(0)),
                               np.zeros((3, len(MODEL_FEATURES))), np.ones(3))
    z = first.scale(x0)
    first.centers = np.array([z[np.array(groups) == g].mean(0) for g in range(3)])
    leader = leader_of(first)

    later = inputs_at(history, base + 10 * DAY_MS)
    proposal = asyncio.run(leader.refine(RawSample(later, list(groups)), rescale=True))  # type: ignore[arg-type]

    assert proposal is not None
    nxt, events = proposal
    assert events == [] and nxt.ids == [0, 1, 2]
    assert list(pairwise_sq_dist(nxt.scale(later), nxt.centers).argmin(1)) == groups


def test_first_model_of_a_history__comes_from_its_customers_alone_whatever_their_order() -> None:
    # a step of history with no model yet fits the first one on the sample alone (not a merge
    # of the workers' clusterers, which depends on how far they got by the wall clock): the same
    # customers give the same model, in whatever order the store hands them over
    base = 1_767_225_600_000.0
    history = {f"c{c:02d}": burst(f"c{c:02d}", c % 3, base) for c in range(60)}
    now = base + 2 * DAY_MS
    derived = [derive(accumulate(evs, horizon_ms=400 * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS), now)
               for evs in history.values()]
    groups = [c % 3 for c in range(60)]
    leader = Leader(Settings(n_segments=3, model_warmup_per_segment=20), None, None, None,  # type: ignore[arg-type]
                    Assigner(0.0, Metrics(CollectorRegistry()),
                             DriftMonitor(DriftConfig.from_settings(Settings()), MODEL_FEATURES),
                             lambda m: None), None)  # type: ignore[arg-type]

    fitted = [asyncio.run(leader.first_fit(LocalSample([{}] * len(d), d))) for d in (derived, derived[::-1])]
    assert asyncio.run(leader.first_fit(LocalSample([{}] * 59, derived[:59]))) is None  # < 3 * 20

    (a, born), (b, _) = [f for f in fitted if f is not None]
    assert a.version == 1 and a.ids == [0, 1, 2] and [e.status for e in born] == ["born"] * 3
    np.testing.assert_allclose(b.mean, a.mean)
    np.testing.assert_allclose(b.centers, a.centers)
    rows = a.matrix([model_input(d) for d in derived])
    assert adjusted_rand_score(groups, pairwise_sq_dist(a.scale(rows), a.centers).argmin(1)) == 1.0


def test_a_step_that_outlasts_the_idle__keeps_the_timers_aside_until_its_batch_is_done() -> None:
    # On a busy machine (CI) a batch's steps took longer than HISTORY_IDLE_MS: the merge and
    # catalog timers woke in the middle of the history, took it for drained, merged the
    # worker's clusterer and re-fitted at a wall-clock point, and two replays of the same file
    # ended at ARI 0.39. History must hold until the batch is applied, and idle from its end.
    wall: list[float] = [20_000 * DAY_MS]  # 2024-10-04
    settings = Settings(clock="event", history_step_hours=24.0)
    store = RedisFeatureStore.from_url("redis://127.0.0.1:1/0", Keys("hs"), dedup_horizon_days=30,
                                       retention_days=30)  # never reached: _process is replaced
    engine = Engine(settings, store, build_segmenter(settings), publisher=None,  # type: ignore[arg-type]
                    metrics=Metrics(CollectorRegistry()), wall_ms=lambda: wall[0])
    seen_in_steps: list[bool] = []

    async def slow_step() -> None:
        wall[0] += 3 * HISTORY_IDLE_MS  # a re-fit and a sweep on a loaded machine
        seen_in_steps.append(engine.pace.history)

    async def applied(part: object) -> BatchReport:
        return BatchReport()

    engine.history_step = slow_step
    engine._process = applied  # type: ignore[method-assign,assignment]
    start = wall[0] - 40 * DAY_MS
    messages = [InMessage(settings.topic_transactions, 0, d, b"c1", orjson.dumps({
        "event_id": f"e{d}", "customer_id": "c1", "ts": int(start + d * DAY_MS), "amount": 10.0,
        "currency": "EUR"}))
        for d in range(4)]
    assert len(engine.prepare(messages).events) == 4
    asyncio.run(engine.process(messages))

    assert len(seen_in_steps) == 3  # a step at each of the three day boundaries crossed
    assert all(seen_in_steps)  # the timers stood aside through every one
    assert engine.pace.history and not engine.pace.drained()  # idle counts from the batch's end
    wall[0] += HISTORY_IDLE_MS
    assert not engine.pace.history and engine.pace.drained()


def test_after_a_history__the_clusterers_are_not_merged_until_live_events_come() -> None:
    # the worker's clusterer learned the history in the order batches arrived in; merged once
    # the history had drained, it replaced the steps' model with one that differs between two
    # replays of the same file (v60 "from 1 workers" in both, from different clusterers)
    wall = [100 * DAY_MS]
    pace = Pace("event", step_hours=24.0, wall_ms=lambda: wall[0])
    assert pace.merging  # a live worker merges from the start
    pace.cut([wall[0] - 30 * DAY_MS])
    assert not pace.merging
    wall[0] += HISTORY_IDLE_MS + 1
    assert pace.drained() and not pace.merging  # drained: the last step's model stands
    wall[0] += 60_000
    assert not pace.merging
    pace.cut([wall[0] - 1000.0])  # live events
    assert pace.merging


def test_input_said_to_wait__holds_the_history_through_a_slow_fetch_but_not_forever() -> None:
    # CI again (ARI 0.39 twice): on a loaded machine the next fetch of the history came more
    # than 5 s after the last batch, the history was taken for drained in its middle, and a
    # step ran at a wall-clock point of it
    wall = [100 * DAY_MS]
    pace = Pace("event", step_hours=24.0, wall_ms=lambda: wall[0])
    pace.backlog(True)  # the consumer: more waits after this batch
    with pace.applying():
        pace.cut([wall[0] - 30 * DAY_MS])
    wall[0] += HISTORY_IDLE_MS + 1
    assert pace.history and not pace.drained()
    wall[0] += HISTORY_BACKLOG_IDLE_MS
    assert not pace.history and pace.drained()  # bounded: a high watermark past the last record
    pace.backlog(False)  # the last batch of the next stretch: nothing more waits
    with pace.applying():
        pace.cut([wall[0] - 20 * DAY_MS])
    wall[0] += HISTORY_IDLE_MS + 1
    assert pace.drained()
