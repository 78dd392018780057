"""Generator drift scenarios: the planted change happens at the set time, to the set persona."""

from __future__ import annotations

from collections import Counter

import pytest

from streamseg.generate import simulate
from streamseg.generate.scenarios import Scenario
from streamseg.timeunits import DAY_MS

END = 1_767_225_600_000
DAYS = 40


def weekly_events(kind: str, **kw: object) -> tuple[dict[str, str], Counter[tuple[str, str]], int]:
    sc = Scenario(kind, **kw)  # type: ignore[arg-type]
    truth = sc.assign(300, seed=3)
    change = sc.change_ms(days=DAYS, end_ms=END)
    seen: Counter[tuple[str, str]] = Counter()
    for ev in simulate(truth, days=DAYS, end_ms=END, seed=3, scenario=sc):
        if change - 7 * DAY_MS <= ev.ts_ms < change + 7 * DAY_MS:
            seen[truth[ev.customer_id], "before" if ev.ts_ms < change else "after"] += 1
    return truth, seen, change


def test_shrink__the_persona_goes_mostly_silent_at_the_change_and_others_do_not() -> None:
    _, seen, _ = weekly_events("shrink")
    assert seen["window_shopper", "after"] < 0.25 * seen["window_shopper", "before"]
    assert seen["loyal_high_spender", "after"] > 0.7 * seen["loyal_high_spender", "before"]


def test_new_persona__appears_only_after_the_change() -> None:
    truth, seen, _ = weekly_events("new_persona")
    assert sum(p == "new_explorer" for p in truth.values()) == 60  # share 0.2
    assert seen["new_explorer", "before"] == 0 < seen["new_explorer", "after"]


def test_persona_shift__the_persona_starts_ordering_after_the_change() -> None:
    sc = Scenario("persona_shift")
    truth = sc.assign(300, seed=3)
    change = sc.change_ms(days=DAYS, end_ms=END)
    orders: Counter[str] = Counter()
    for ev in simulate(truth, days=DAYS, end_ms=END, seed=3, scenario=sc):
        if truth[ev.customer_id] == "window_shopper" and ev.topic_role == "transactions":
            orders["after" if ev.ts_ms >= change else "before"] += 1
    # 75% of the period before the change, 25% after: still many more orders after
    assert orders["after"] > 3 * orders["before"]


def mix_change(seen: Counter[tuple[str, str]]) -> float:
    """Total variation distance between the persona mix of events before and after."""
    personas = {p for p, _ in seen}
    share = {when: {p: seen[p, when] / sum(seen[q, when] for q in personas) for p in personas}
             for when in ("before", "after")}
    return sum(abs(share["after"][p] - share["before"][p]) for p in personas) / 2


def test_stationary__keeps_the_persona_mix_far_steadier_than_a_shrink() -> None:
    # 300 customers: a week's mix moves by sampling noise alone (~0.1); a shrink moves it 2x+
    steady, shrunk = mix_change(weekly_events("stationary")[1]), mix_change(weekly_events("shrink")[1])
    assert steady < 0.15 and shrunk > 2 * steady


@pytest.mark.parametrize("kw, match", [
    ({"kind": "sideways"}, "unknown scenario"),
    ({"kind": "shrink", "at": 1.5}, "fraction"),
    ({"kind": "shrink", "persona": "new_explorer"}, "steady mix"),
    ({"kind": "new_persona", "persona": "bargain_hunter"}, "already in the steady mix"),
    ({"kind": "persona_shift", "to": "window_shopper"}, "another persona"),
    ({"kind": "shrink", "share": 1.0}, "share"),
])
def test_bad_scenario__is_refused_with_a_clear_message(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Scenario(**kw)
