"""The migration forecast: customer flows, Markov steps with exits and arrivals, the report and metrics."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamseg.drift import DriftConfig, DriftMonitor
from streamseg.drift.evaluate import forecast_errors
from streamseg.drift.forecast import (
    PERSISTENCE_PAIRS,
    PERSISTENCE_PRIOR,
    Flows,
    Persistence,
    mean_abs_error,
)
from streamseg.features.registry import MODEL_FEATURES
from streamseg.metrics import Metrics

MIN = 60_000


def test_flows__count_kept_moved_gone_and_arrived_customers_by_segment_and_recency() -> None:
    ref = {"a": (0, 0), "b": (0, 0), "c": (0, 1), "d": (0, 1), "e": (1, 0)}
    cur = {"a": (0, 0), "b": (1, 1), "e": (1, 0), "f": (1, 0), "g": (0, 1)}
    f = Flows.build(ref, cur, [0, 1], span=2)
    assert f.before.tolist() == [[2, 2], [1, 0]] and f.kept.tolist() == [[2, 0], [1, 0]]
    assert f.moves.tolist() == [[1, 1], [0, 1]]  # a stayed in 0, b moved to 1, e stayed in 1
    assert f.exits.tolist() == [2, 0]  # c and d went silent
    assert f.arrivals.tolist() == [1, 1]  # g and f
    assert f.size.tolist() == [2, 3] and f.now.tolist() == [[1, 1], [2, 1]]


def test_forecast__hand_computed_with_exits_by_recency_moves_and_arrivals() -> None:
    """Reference: segment 0 holds 10 customers active in the last slot (8 of them kept: 6
    stay, 2 move to 1) and 10 silent for a slot (all gone); segment 1 holds 10 active in the
    last slot, all kept. The window: 5 + 5 in segment 0 (recency 0 and 1), 12 in 1 (recency
    0), of whom 4 arrived in 0 and 2 in 1."""
    f = Flows(sids=(0, 1), now=np.array([[5.0, 5.0], [12.0, 0.0]]),
              before=np.array([[10.0, 10.0], [10.0, 0.0]]), kept=np.array([[8.0, 0.0], [10.0, 0.0]]),
              moves=np.array([[6.0, 2.0], [0.0, 10.0]]), arrivals=np.array([4.0, 2.0]))
    keep = f.keep_rates()
    pooled0 = 18 / 20  # recency 0 over both segments; recency 1: 0 / 10
    assert keep.ravel().tolist() == pytest.approx([(8 + 10 * pooled0) / 20, 0.0,
                                                   (10 + 10 * pooled0) / 20, 0.0])
    kept0, kept1 = 5 * keep[0, 0], 12 * keep[1, 0]  # recency-1 customers are expected gone
    one_n = np.array([kept0 * 0.75 + 4, kept0 * 0.25 + kept1 + 2])
    p = np.array([[6 / 20, 2 / 20], [0.0, 1.0]])  # no recency: segment 0 keeps 8 of its 20
    two_n = one_n @ p + np.array([4, 2])
    one, two = f.forecast(shrink=False)
    assert one.tolist() == pytest.approx((one_n / one_n.sum()).tolist())
    assert two.tolist() == pytest.approx((two_n / two_n.sum()).tolist())
    assert f.exits.tolist() == [12, 0] and f.size.tolist() == [10, 12]


def test_forecast__a_steady_population_stays_as_it_is() -> None:
    """Every customer kept in its segment, none arriving: the forecast is no change."""
    f = Flows.build({f"c{i}": (i % 2, 0) for i in range(30)},
                    {f"c{i}": (i % 2, 0) for i in range(30)}, [0, 1], span=3)
    one, two = f.forecast()
    assert one.tolist() == pytest.approx([0.5, 0.5]) and two.tolist() == pytest.approx([0.5, 0.5])


def _population(rng: np.random.Generator, moves: np.ndarray, windows: int = 3) -> list[dict]:
    """Windows of a simulated population of ~400 customers in four segments: each window
    keeps three in four of the last one's customers (moving by ``moves``, row-stochastic)
    and 100 arrive (segments as the steady shares); recency is random over three slots."""
    steady = np.array([0.4, 0.3, 0.2, 0.1])
    seg = dict(enumerate(rng.choice(4, 400, p=steady).tolist()))
    out, new = [], 400
    for _ in range(windows):
        out.append({f"c{c}": (g, int(rng.integers(3))) for c, g in seg.items()})
        seg = {c: int(rng.choice(4, p=moves[g])) for c, g in seg.items() if rng.random() < 0.75}
        seg.update((new + i, int(g)) for i, g in enumerate(rng.choice(4, 100, p=steady)))
        new += 100
    return out


def _shares(window: dict, k: int = 4) -> np.ndarray:
    n = np.bincount([g for g, _ in window.values()], minlength=k).astype(float)
    return n / n.sum()


def test_forecast__on_a_steady_population_drops_the_chains_sampling_noise() -> None:
    """A steady population (customers move, arrive and leave without changing the mix):
    every change the chain carries forward is noise; the shrunk forecast stays near "no
    change" and is closer to what happens than the chain as estimated."""
    steady = np.array([0.4, 0.3, 0.2, 0.1])
    moves = 0.9 * np.eye(4) + 0.1 * steady  # stationary at the steady shares
    raw_off, off, raw_err, err = [], [], [], []
    for seed in range(20):
        ref, cur, nxt = _population(np.random.default_rng(seed), moves)
        f = Flows.build(ref, cur, range(4), span=3)
        now, later = _shares(cur), _shares(nxt)
        raw, shrunk = f.forecast(shrink=False)[0], f.forecast()[0]
        raw_off.append(np.abs(raw - now).mean())
        off.append(np.abs(shrunk - now).mean())
        raw_err.append(np.abs(raw - later).mean())
        err.append(np.abs(shrunk - later).mean())
    assert np.mean(off) < np.mean(raw_off) / 3, (np.mean(off), np.mean(raw_off))
    assert np.mean(err) < np.mean(raw_err), (np.mean(err), np.mean(raw_err))


def test_forecast__keeps_a_real_flow_out_of_its_noise() -> None:
    """A third of segment 0's kept customers move to segment 1 each window: the shrunk
    forecast keeps most of the chain's change and beats "no change"."""
    moves = np.eye(4)
    moves[0] = [2 / 3, 1 / 3, 0, 0]
    kept, err, still = [], [], []
    for seed in range(20):
        ref, cur, nxt = _population(np.random.default_rng(seed), moves)
        f = Flows.build(ref, cur, range(4), span=3)
        now, later = _shares(cur), _shares(nxt)
        raw, shrunk = f.forecast(shrink=False)[0], f.forecast()[0]
        kept.append((shrunk[0] - now[0]) / (raw[0] - now[0]))
        err.append(np.abs(shrunk - later).mean())
        still.append(np.abs(now - later).mean())
    assert np.mean(kept) > 0.8, kept
    assert np.mean(err) < 0.7 * np.mean(still), (np.mean(err), np.mean(still))


def _tracked(windows: list[dict], span: int = 1) -> list[tuple[float, Flows, np.ndarray]]:
    """Each pair of consecutive windows as the monitor reads it: the persistence factor
    from the reports before (:class:`Persistence`), the flows, the window's shares."""
    past, out = Persistence(span), []
    for b, (ref, cur) in enumerate(itertools.pairwise(windows), 1):
        f = Flows.build(ref, cur, range(4), span=3)
        now = _shares(cur)
        phi = past.observe(b, dict(enumerate(now.tolist())))
        past.forecast_made(b, dict(enumerate(f.forecast(persistence=phi)[0].tolist())))
        out.append((phi, f, now))
    return out


def test_persistence__a_change_that_did_not_go_on_is_damped_two_windows_ahead() -> None:
    """A block of segment 0 moves to 1 in one window and back in the next, over and over:
    each one-off is far above the sampling noise, so the chain carries it forward, and
    it never goes on. The persistence learnt from the past reports drops to 0, so the
    two-window forecast stays at no change, closer to what comes than the chain's; the
    one-window forecast is the chain's."""
    rng = np.random.default_rng(3)
    seg = dict(enumerate(rng.choice(4, 400, p=[0.4, 0.3, 0.2, 0.1]).tolist()))
    windows = []
    for w in range(12):
        windows.append({f"c{c}": (g, int(rng.integers(3))) for c, g in seg.items()})
        a, z = (0, 1) if w % 2 == 0 else (1, 0)
        movers = [c for c, g in seg.items() if g == a][:60]
        seg.update(dict.fromkeys(movers, z))
    tracked = _tracked(windows)
    damped, chain, still = [], [], []
    for (phi, f, now), (_, _, later) in zip(tracked[8:], tracked[10:], strict=False):
        assert phi < 0.05
        one, two = f.forecast(persistence=phi)
        assert one.tolist() == pytest.approx(f.forecast()[0].tolist())
        damped.append(np.abs(two - later).mean())
        chain.append(np.abs(f.forecast()[1] - later).mean())
        still.append(np.abs(now - later).mean())
    assert np.mean(damped) < np.mean(chain) / 2, (damped, chain)
    assert np.mean(damped) == pytest.approx(np.mean(still))


def test_persistence__a_flow_that_goes_on_keeps_its_two_window_forecast() -> None:
    """Every window 15% of segment 0's customers move to segment 1 (600 customers, all
    active): the past reports' forecast changes came true, so the persistence rises
    above its prior, and the two-window forecast keeps most of the chain's change and
    beats "no change"."""
    phis, err, still = [], [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        seg = dict(enumerate(rng.choice(4, 600, p=[0.5, 0.2, 0.2, 0.1]).tolist()))
        windows = []
        for _ in range(10):
            windows.append({f"c{c}": (g, int(rng.integers(3))) for c, g in seg.items()})
            seg = {c: 1 if g == 0 and rng.random() < 0.15 else g for c, g in seg.items()}
        tracked = _tracked(windows)
        for (phi, f, now), (_, _, later) in zip(tracked[6:], tracked[8:], strict=False):
            phis.append(phi)
            err.append(np.abs(f.forecast(persistence=phi)[1] - later).mean())
            still.append(np.abs(now - later).mean())
    assert np.mean(phis) > PERSISTENCE_PRIOR + 0.2, phis
    assert np.mean(err) < 0.5 * np.mean(still), (np.mean(err), np.mean(still))


def test_forecast__no_customers_forecasts_nothing() -> None:
    one, two = Flows.build({}, {}, [0, 1], span=2).forecast()
    assert one.tolist() == [0.0, 0.0] and two.tolist() == [0.0, 0.0]


def test_mean_abs_error__in_share_points_over_every_segment_of_either() -> None:
    assert mean_abs_error({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}) == 0.0
    assert mean_abs_error({0: 1.0}, {1: 1.0}) == 100.0


def _markov_stream(mon: DriftMonitor, minutes: int, rng: np.random.Generator) -> None:
    """300 customers; each minute a tenth of segment 0's members move to 1, a twentieth
    of 1's to 2 (every customer updates once a minute)."""
    seg = np.zeros(300, dtype=int)
    seg[200:] = 1
    for minute in range(minutes):
        prev = seg.copy()
        u = rng.random(300)
        seg = np.where((prev == 0) & (u < 0.1), 1, np.where((prev == 1) & (u < 0.05), 2, prev))
        mon.observe([minute * MIN + 1000] * 300, [dict.fromkeys(MODEL_FEATURES, 0.0)] * 300,
                    seg.tolist(), [1.0] * 300, prev.tolist(),
                    customers=[f"c{i}" for i in range(300)])


def test_report__forecasts_every_segment_and_beats_no_change_on_a_steady_flow() -> None:
    mon = DriftMonitor(DriftConfig(windows=(60,), clock="event", min_customers=20, worker="t"),
                       MODEL_FEATURES)
    _markov_stream(mon, 12, np.random.default_rng(0))
    reports = mon.close(13 * MIN, {}, 1, {})
    assert len(reports) == 11
    for r in reports:
        assert [f.segment_id for f in r.forecast] == [s.segment_id for s in r.segments]
        assert sum(f.one_window_ahead for f in r.forecast) == pytest.approx(1.0)
    errors = forecast_errors(reports)
    assert errors["pairs"] == 10
    assert errors["markov_1"] < errors["no_change_1"] / 2
    assert errors["markov_2"] < errors["no_change_2"] / 2


def test_report_forecast__is_exposed_as_metrics_per_horizon() -> None:
    m = Metrics(CollectorRegistry())
    mon = DriftMonitor(DriftConfig(windows=(60,), clock="event", min_customers=20, worker="t"),
                       MODEL_FEATURES)
    _markov_stream(mon, 3, np.random.default_rng(1))
    rep = mon.close(4 * MIN, {}, 1, {})[-1]
    m.drift.record(rep)
    get = m.registry.get_sample_value
    for f in rep.forecast:
        labels = {"window": "1m", "segment": str(f.segment_id)}
        assert get("streamseg_drift_forecast_share", {**labels, "horizon": "1"}) == f.one_window_ahead
        assert get("streamseg_drift_forecast_share", {**labels, "horizon": "2"}) == f.two_windows_ahead
    for s in rep.segments:  # horizon 0: the window's own shares of its active customers
        labels = {"window": "1m", "segment": str(s.segment_id), "horizon": "0"}
        assert get("streamseg_drift_forecast_share", labels) == s.active_share
    assert get("streamseg_drift_segment_share", {"window": "1m", "segment": "0"}) == rep.segments[0].share


def test_report__carries_the_persistence_it_applied_and_the_pairs_behind_it() -> None:
    """The report says what the forecast believes about itself: the first reports rest on
    the prior alone (no past forecast has an outcome yet); once the steady flow's forecast
    changes came true, the factor is above the prior, rests on the matured pairs, and is
    the one the two-window forecast was damped by."""
    mon = DriftMonitor(DriftConfig(windows=(60,), clock="event", min_customers=20, worker="t"),
                       MODEL_FEATURES)
    _markov_stream(mon, 12, np.random.default_rng(0))
    reports = mon.close(13 * MIN, {}, 1, {})
    first, last = reports[0], reports[-1]
    assert (first.forecast_persistence, first.forecast_persistence_pairs) == (PERSISTENCE_PRIOR, 0)
    # one-minute windows reported every minute: each earlier report's outcome is known, up to 7
    assert [r.forecast_persistence_pairs for r in reports] == [min(i, PERSISTENCE_PAIRS)
                                                              for i in range(len(reports))]
    assert last.forecast_persistence is not None and last.forecast_persistence > PERSISTENCE_PRIOR + 0.2
    errors = forecast_errors(reports)  # each horizon's mean says how many pairs it is over
    assert (errors["pairs_1"], errors["pairs_2"]) == (len(reports) - 1, len(reports) - 2)


def _version_2(rows: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Version 2's assignment of raw model-input rows: segment 1 above 0.3 of discount_share."""
    x = rows[:, list(names).index("discount_share")]
    return (x > 0.3).astype(np.int64), np.ones(len(rows))


def _observe(mon: DriftMonitor, minute: int, xs: list[float], cut: float, version: int,
             cids: list[str]) -> None:
    """The customers ``cids`` active in ``minute``, assigned by ``version``: segment 1 above
    ``cut`` of discount_share, else 0 (their previous segment as in minute 0, cut 0.5)."""
    mon.observe([minute * MIN + 1000] * len(xs),
                [{**dict.fromkeys(MODEL_FEATURES, 0.0), "discount_share": x} for x in xs],
                [int(x > cut) for x in xs], [1.0] * len(xs),
                [None if minute == 0 else int(x > 0.5) for x in xs],
                model_version=version, customers=cids)


def test_report__a_new_versions_reassignment_is_forecast_once_not_carried_forward() -> None:
    """Both windows were assigned by version 1 (boundary at 0.5 of discount_share) and
    nobody moved; version 2 (boundary at 0.3) came at the window's end. At their next
    event it re-assigns the 20 customers at 0.4 to segment 1: a one-off of the model
    change, not their behaviour. One window ahead the forecast takes it (segment 0 holds
    the 30 customers at 0.1), two windows ahead it stays taken once (no second 20
    customers leave segment 0). The chain from the windows as assigned forecast no change."""
    mon = DriftMonitor(DriftConfig(windows=(60,), clock="event", min_customers=20, worker="t"),
                       MODEL_FEATURES)
    xs, cids = [0.1] * 30 + [0.4] * 20 + [0.9] * 50, [f"c{i}" for i in range(100)]
    for minute in (0, 1):
        _observe(mon, minute, xs, 0.5, 1, cids)
    (rep,) = mon.close(3 * MIN, {}, 2, {}, rescore=_version_2)
    assert [s.active_share for s in rep.segments] == pytest.approx([0.5, 0.5])  # as assigned
    assert [f.one_window_ahead for f in rep.forecast] == pytest.approx([0.3, 0.7])
    assert [f.two_windows_ahead for f in rep.forecast] == pytest.approx([0.3, 0.7])


def test_report__customers_the_current_version_assigned_are_not_read_again() -> None:
    """Half the window was assigned by version 1, half by version 2: only the first half is
    read with version 2 as its start (the 20 customers at 0.4 in it go to segment 1); the
    customers version 2 assigned already count where they are. Without ``rescore`` the
    chain steps from the window as assigned."""
    xs, cids = [0.1] * 30 + [0.4] * 40 + [0.9] * 30, [f"c{i}" for i in range(100)]

    def report(rescore: bool) -> list[float]:
        mon = DriftMonitor(DriftConfig(windows=(60,), clock="event", min_customers=20,
                                       worker="t"), MODEL_FEATURES)
        _observe(mon, 0, xs, 0.5, 1, cids)
        _observe(mon, 1, xs[:50], 0.5, 1, cids[:50])
        _observe(mon, 1, xs[50:], 0.3, 2, cids[50:])
        (rep,) = mon.close(3 * MIN, {}, 2, {}, rescore=_version_2 if rescore else None)
        assert [s.active_share for s in rep.segments] == pytest.approx([0.5, 0.5])
        return [f.one_window_ahead for f in rep.forecast]

    # 20 of segment 0's 70 moved (by version 2) and the chain carries that rate on: from 30
    # customers read with version 2, ~21; from the 50 as assigned, ~36
    assert report(True)[0] == pytest.approx(30 * 50 / 70 / 100, abs=0.01)
    assert report(False)[0] == pytest.approx(50 * 50 / 70 / 100, abs=0.01)
