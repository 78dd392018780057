"""The planted lapse process and visit rhythm (generator, for the customer-value benchmark)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from itertools import pairwise

import pytest

from streamseg.generate import GeneratedEvent, assign_personas, simulate
from streamseg.generate.lifecycle import LIFECYCLES, PACE_CV, PACE_SIGMA, Lifecycle
from streamseg.generate.personas import PERSONAS
from streamseg.generate.scenarios import Scenario
from streamseg.timeunits import DAY_MS

END_MS = 1_767_225_600_000
DAYS = 240
SEED = 5


@pytest.fixture(scope="module")
def truth() -> dict[str, str]:
    return assign_personas(140, seed=SEED, weights={"loyal_high_spender": 1, "bargain_hunter": 1,
                                                    "lapsing": 1, "serial_returner": 1})


@pytest.fixture(scope="module")
def events(truth: dict[str, str]) -> list[GeneratedEvent]:
    return list(simulate(truth, days=DAYS, end_ms=END_MS, seed=SEED, scenario=Lifecycle(SEED)))


def test_every_persona__has_a_lifecycle_whose_lapse_hazard_rises_with_age() -> None:
    assert set(LIFECYCLES) == set(PERSONAS)
    assert all(life.lifetime_shape > 1.0 for life in LIFECYCLES.values())
    assert any(life.gap_shape > 1.0 for life in LIFECYCLES.values())  # regular shoppers
    assert any(life.gap_shape < 1.0 for life in LIFECYCLES.values())  # bursty ones


def test_lifecycle__is_deterministic_per_seed_and_customer() -> None:
    assert Lifecycle(3).plan("c000007", "lapsing") == Lifecycle(3).plan("c000007", "lapsing")
    assert Lifecycle(3).plan("c000007", "lapsing") != Lifecycle(4).plan("c000007", "lapsing")


def test_customers__go_silent_when_their_planted_lifetime_ends(
    truth: dict[str, str], events: list[GeneratedEvent]
) -> None:
    first: dict[str, int] = {}
    last_click: dict[str, int] = {}
    for ev in events:
        first.setdefault(ev.customer_id, ev.ts_ms)
        if ev.topic_role == "clickstream":
            last_click[ev.customer_id] = ev.ts_ms
    plans = {cid: Lifecycle(SEED).plan(cid, persona) for cid, persona in truth.items()}
    lapsed = 0
    for cid, ts in last_click.items():
        lifetime = plans[cid].lifetime_days or 0.0
        # the last visit starts before the lifetime ends; it lasts at most a few hours
        assert ts - first[cid] <= lifetime * DAY_MS + DAY_MS
        lapsed += first[cid] + lifetime * DAY_MS < END_MS - 30 * DAY_MS
    # ... and within the period many do, also among personas that never lapse by default
    assert lapsed > len(last_click) // 4
    assert any(truth[cid] == "loyal_high_spender" and first[cid] + (plans[cid].lifetime_days or 0)
               * DAY_MS < END_MS - 30 * DAY_MS for cid in last_click)


def session_gap_cv(truth: dict[str, str], events: list[GeneratedEvent], persona: str) -> float:
    """Median over the persona's customers of the coefficient of variation of gaps between
    web-session starts (1 for a Poisson process)."""
    starts: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for ev in events:
        sid = ev.payload.get("session_id", "")
        if truth[ev.customer_id] == persona and "-s" in sid and sid not in seen:
            seen.add(sid)
            starts[ev.customer_id].append(ev.ts_ms)
    cvs = []
    for ts in starts.values():
        gaps = [b - a for a, b in pairwise(ts)]
        if len(gaps) >= 10:
            cvs.append(statistics.pstdev(gaps) / statistics.fmean(gaps))
    return statistics.median(cvs)


def test_visits__are_regular_for_loyal_customers_and_bursty_for_bargain_hunters(
    truth: dict[str, str], events: list[GeneratedEvent]
) -> None:
    assert LIFECYCLES["loyal_high_spender"].gap_shape > 1 > LIFECYCLES["bargain_hunter"].gap_shape
    assert session_gap_cv(truth, events, "loyal_high_spender") < 0.8
    assert session_gap_cv(truth, events, "bargain_hunter") > 1.2


def test_lifecycle_around_a_scenario__keeps_the_scenario_s_plan() -> None:
    inner = Scenario("shrink", at=0.5)
    plan = Lifecycle(2, inner=inner).plan("c000001", "window_shopper")
    base = inner.plan("c000001", "window_shopper")
    assert (plan.active_from, plan.active_until) == (base.active_from, base.active_until)
    assert plan.lifetime_days is not None and plan.gap_shape == LIFECYCLES["window_shopper"].gap_shape


def test_pace__varies_several_fold_between_customers_of_a_persona_with_mean_1() -> None:
    paces = [Lifecycle(SEED).plan(f"c{i:06d}", "loyal_high_spender").rate_multiplier or 0.0
             for i in range(4000)]
    assert statistics.fmean(paces) == pytest.approx(1.0, abs=0.08)  # personas keep their mean rates
    # lognormal with the documented spread (its sample CV is too heavy-tailed to check directly)
    assert statistics.pstdev(math.log(x) for x in paces) == pytest.approx(PACE_SIGMA, rel=0.05)
    assert math.sqrt(math.exp(PACE_SIGMA**2) - 1) == pytest.approx(PACE_CV)
    deciles = statistics.quantiles(paces, n=10)
    assert deciles[-1] / deciles[0] > 10  # the fast tenth visit over ten times as often as the slow


def test_fast_customers__visit_more_often_than_slow_ones_of_the_same_persona(
    truth: dict[str, str], events: list[GeneratedEvent]
) -> None:
    sessions: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if "-s" in (sid := ev.payload.get("session_id", "")):
            sessions[ev.customer_id].add(sid)
    plans = {cid: Lifecycle(SEED).plan(cid, p) for cid, p in truth.items()}
    loyal = sorted((plans[c].rate_multiplier or 0.0, c) for c, p in truth.items()
                   if p == "loyal_high_spender" and c in sessions)
    third = len(loyal) // 3
    per_day = {c: len(sessions[c]) / max(1.0, plans[c].lifetime_days or 0.0) for _, c in loyal}
    slow = statistics.median(per_day[c] for _, c in loyal[:third])
    fast = statistics.median(per_day[c] for _, c in loyal[-third:])
    assert fast > 4 * slow
