"""The bench's load keeps each customer's simulated spacing, pass after pass, and sends passes whole."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict

import orjson
import pytest

from streamseg.bench.load import Cursor, Pool, Timeline, envelopes, events, singles
from streamseg.bench.runner import Plan, subject_settings
from streamseg.leader.pace import Pace
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS


@pytest.fixture(scope="module")
def pool() -> Pool:
    return Pool.simulate(40, days=28.0, seed=3)


def timed(pool: Pool, timeline: Timeline, first_pass: int, passes: int) -> list[tuple[str, int]]:
    """(customer id, event time) of ``passes`` whole passes from ``first_pass``."""
    out = itertools.islice(events(pool, first_pass, timeline=timeline), passes * len(pool))
    return [(doc["customer_id"], doc["ts"]) for doc in (orjson.loads(v) for _, _, v in out)]


def test_timeline__event_time_moves_forward_across_passes(pool: Pool) -> None:
    timeline = Timeline.of(pool, Settings().earliest_event_ms)
    stream = timed(pool, timeline, 0, 3)
    times = [ts for _, ts in stream]
    assert times == sorted(times)  # the engine's event clock never has to stand still or go back
    n = len(pool)
    for k in range(2):  # each pass lies after the one before, in the next period
        assert max(times[k * n:(k + 1) * n]) <= min(times[(k + 1) * n:(k + 2) * n])
        assert times[(k + 1) * n] - times[k * n] == timeline.period_ms


def test_timeline__keeps_every_customers_spacing(pool: Pool) -> None:
    simulated: dict[str, list[int]] = defaultdict(list)
    for ev in pool.events:
        simulated[ev.customer_id.decode()].append(ev.ms)
    timeline = Timeline.of(pool, Settings().earliest_event_ms)
    sent: dict[str, list[int]] = defaultdict(list)
    for cid, ts in timed(pool, timeline, 1, 1):
        sent[cid.removeprefix("r1")].append(ts)
    assert set(sent) == set(simulated) and len(simulated) > 10
    for cid, times in simulated.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert [b - a for a, b in itertools.pairwise(sent[cid])] == gaps, cid
    span = max(max(t) for t in simulated.values()) - min(min(t) for t in simulated.values())
    assert span > 20 * DAY_MS  # weeks of history, not the seconds it takes to send them


def test_timeline__no_pass_is_in_the_future_or_before_the_earliest_accepted_time(pool: Pool) -> None:
    settings = Settings()
    timeline = Timeline.of(pool, settings.earliest_event_ms)
    assert timeline.last > 100  # room for far more passes than a full run sends
    first, last = timed(pool, timeline, 0, 1), timed(pool, timeline, timeline.last, 1)
    assert min(ts for _, ts in first) >= settings.earliest_event_ms
    assert max(ts for _, ts in last) <= time.time() * 1000
    with pytest.raises(RuntimeError, match="in the future"):
        next(events(pool, timeline.last + 1, timeline=timeline))


def test_envelopes__a_pass_goes_out_whole_before_the_next_begins(pool: Pool) -> None:
    settings, cursor = Settings(), Cursor()
    records = envelopes(settings, pool, 100, cursor=cursor)
    sent = []
    while not cursor.pass_sent:
        sent.append(next(records))
    assert sum(r[4] for r in sent) == len(pool) == cursor.taken
    cids = {doc["customer_id"] for r in sent for doc in orjson.loads(r[3])}
    assert cids == set(pool.truth)  # the first pass's names: nothing of the next pass
    assert next(records)[3].count(b'"customer_id":"r1c') == 100  # the next envelope: the next pass's


def test_singles__mark_the_last_record_of_every_pass(pool: Pool) -> None:
    cursor = Cursor()
    records = singles(Settings(), pool, cursor=cursor)
    ends = []
    for i in range(3 * len(pool)):
        next(records)
        if cursor.pass_sent:
            ends.append(i)
    assert ends == [len(pool) - 1, 2 * len(pool) - 1, 3 * len(pool) - 1]


def test_subject_settings__the_simulated_load_runs_the_engines_live_path(pool: Pool) -> None:
    # a pass is weeks of history sent in seconds: history pacing would pause batches at every
    # event-time step; the bench measures the live path
    settings = subject_settings(Settings(), "engine", Plan.make(True, 0))
    timeline = Timeline.of(pool, settings.earliest_event_ms)
    times = [ts for _, ts in timed(pool, timeline, 0, 1)]
    pace = Pace(settings.clock, settings.history_step_hours, wall_ms=lambda: time.time() * 1000)
    assert [steps for _, steps in pace.cut(times)] == [None] and not pace.history
    # drift windows close a handful of slots per pass, not one per minute of history
    assert min(settings.drift_window_seconds) * 1000 >= 7 * DAY_MS


def test_rounds__lanes_put_more_customers_into_the_same_simulated_days(pool: Pool) -> None:
    # a higher rate is more customers, not the same days pressed into fewer seconds
    timeline, cursor = Timeline.of(pool, Settings().earliest_event_ms), Cursor()
    stream = events(pool, cursor=cursor, timeline=timeline)
    n = len(pool)
    one = [orjson.loads(v) for _, _, v in itertools.islice(stream, n)]
    cursor.lanes = 3
    three = [orjson.loads(v) for _, _, v in itertools.islice(stream, 3 * n)]
    assert cursor.pass_sent and cursor.rounds == [(0, 0, 1), (n, 1, 3)]
    times = [doc["ts"] for doc in three]
    assert times == sorted(times)  # the lanes interleave in time order
    by_pass: dict[str, list[int]] = defaultdict(list)
    for doc in three:
        by_pass[doc["customer_id"][:2]].append(doc["ts"])
    assert sorted(by_pass) == ["r1", "r2", "r3"]  # three passes, each with names of its own
    # each lane is the pool's pass, one period after the round before: the same days for all three
    base = [doc["ts"] + timeline.period_ms for doc in one]
    assert all(ts == base for ts in by_pass.values())
    assert len({doc["customer_id"] for doc in three}) == 3 * pool.customers
    cursor.lanes = 1
    nxt = orjson.loads(next(stream)[2])
    assert nxt["customer_id"].startswith("r4") and nxt["ts"] == base[0] + timeline.period_ms
    assert cursor.last_round() == (1, 3)


def test_rounds__the_customers_a_phase_touched_follow_its_lanes(pool: Pool) -> None:
    from streamseg.bench.segments import round_truth, touched

    cursor = Cursor(lanes=2)
    stream = singles(Settings(), pool, cursor=cursor)
    n, sent = len(pool), []
    while not cursor.pass_sent:
        sent.append(next(stream)[2].decode())
    assert len(sent) == 2 * n
    assert touched(pool, cursor.rounds, 0, 2 * n) == round_truth(pool, 0, 2)
    assert set(touched(pool, cursor.rounds, 5, 17)) == set(sent[5:17])
    assert round_truth(pool, 0, 2) == {**pool.truth, **{"r1" + c: p for c, p in pool.truth.items()}}


def test_envelopes__a_round_of_lanes_goes_out_whole(pool: Pool) -> None:
    cursor = Cursor(lanes=2)
    records = envelopes(Settings(), pool, 100, cursor=cursor)
    sent = []
    while not cursor.pass_sent:
        sent.append(next(records))
    assert sum(r[4] for r in sent) == 2 * len(pool) == cursor.taken
    cids = {doc["customer_id"] for r in sent for doc in orjson.loads(r[3])}
    assert cids == set(pool.truth) | {"r1" + c for c in pool.truth}
