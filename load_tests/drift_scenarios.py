"""Drift alerts worth acting on: false-alarm rate per alert type and detection delay per scenario.

    python load_tests/drift_scenarios.py [--seeds 5,6,7] [--refit-every 0,30]
        [--kinds stationary,shrink] [--value-model]

Runs stationary, persona_shift, new_persona and shrink on each seed, once per
re-fit cadence (the leader re-fits every N batches of 500 events; 0: never; a
worker re-fits every ``model_sync_s``, ~30 batches in the worker drift test),
with the settings of the scenario tests (tests/integration/drift_support.py).
It reports, per alert type, the share of the stationary runs' evaluated weekly
windows that raise it (the false-alarm rate; the target is at most 5%), and per
scenario, seed and cadence the delay from the change to the first alert.
``--kinds`` runs some of the scenarios only (the stationary one always). The
value model's own timer re-fits it at most every ``value_refit_s`` wall seconds,
in the background: a run of half a minute ends before its first fit, so no
value figure is evaluated, and no sweep re-scores silent customers. With
``--value-model`` (and a re-fit cadence) the value model is re-fitted (awaited)
just before each leader re-fit and the re-scoring sweep runs after every batch,
as on a worker's leader: the churn-risk figures and alerts are evaluated,
across value re-fits that must not read as customers becoming riskier
(docs/model.md: value re-fits).
Results: load_tests/results/drift_scenarios.{json,md,png}. No broker takes part
(none is started); the results say so.

It also scores the reports' migration forecast (docs/model.md: migration
forecast): the mean absolute error, in share points, of the one- and two-window
forecasts of the segments' shares of active customers (``active_share``) of the
evaluated weekly reports against the ``active_share`` reported for those windows,
next to the "no change" forecast on the same pairs; over all pairs, and
over the pairs read with one model version (no re-fit in between); and the
forecast minus no change on the origins before and after the planted change
(a window that ends before the change cannot foresee it). With
``--frozen-model`` the four scenarios run again with the first global model kept
(no merge or re-fit after it), so every pair is read with one model: the
forecast's own error, without re-fits moving the segment boundaries.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))  # `common`, also when a test loads this file

from common import NO_BROKER, announce, run_script, stamped, valkey_only

from streamseg.drift import ALERT_NAMES, DriftReport, Thresholds
from streamseg.drift.evaluate import ScenarioRun, end_ms, forecast_errors
from tests.integration.drift_support import WINDOW, WINDOW_MS, day, evaluated
from tests.integration.test_drift_scenarios import _run

OUT = Path(__file__).parent / "results"
KINDS = ("stationary", "persona_shift", "new_persona", "shrink")


#: Each alert's figure in a report (feature_psi: the largest of the inputs that may alert).
FIGURES: dict[str, Callable[[DriftReport], float]] = {
    "composition_shift": lambda r: r.composition_shift,
    "segment_psi": lambda r: r.psi,
    "feature_psi": lambda r: max((v for f, v in r.feature_psi.items()
                                  if f not in r.time_driven_features), default=0.0),
    "emerging_segment": lambda r: r.emerging_share,
    "population_shrink": lambda r: r.population_shrink,
    "high_risk_share": lambda r: _rise(r.high_risk_share, r.reference_high_risk_share),
    "segment_churn_risk": lambda r: max((_rise(s.mean_churn_risk, s.reference_mean_churn_risk)
                                         for s in r.risk), default=0.0),
    "value_at_risk": lambda r: _growth(r.value_at_risk_share, r.reference_value_at_risk_share),
}


def _rise(now: float | None, before: float | None) -> float:
    """A churn-risk figure's rise over its reference (0 while either is unscored)."""
    return now - before if now is not None and before is not None else 0.0


def _growth(now: float | None, before: float | None) -> float:
    """Relative growth, as the value_at_risk alert measures it (0 without a reference)."""
    return now / before - 1.0 if now is not None and before else 0.0


def false_alarms(runs: list[ScenarioRun]) -> dict[str, Any]:
    """Per alert type: stationary weekly windows raising it, out of all evaluated ones, and
    the highest figure seen as a share of the alert's threshold (the margin left)."""
    weekly = [r for run in runs for r in evaluated(run.reports) if r.window == WINDOW]
    firing = {name: sum(name in {a.alert for a in r.alerts} for r in weekly) for name in ALERT_NAMES}
    levels = Thresholds().by_alert()
    # how the value figures were compared: "rescored" windows span a value re-fit
    bases = Counter(getattr(r, "value_basis", "scored") for r in weekly)
    valued = sum(r.high_risk_share is not None and r.reference_high_risk_share is not None
                 for r in weekly)  # both windows scored by a value model: value alerts evaluated
    return {"windows": len(weekly), "by_alert": firing, "value_basis": dict(bases),
            "value_evaluated": valued,
            "rate": {n: k / len(weekly) if weekly else None for n, k in firing.items()},
            "max_of_threshold": {n: max((FIGURES[n](r) for r in weekly), default=0.0) / levels[n]
                                 for n in ALERT_NAMES}}


def detection(kind: str, seed: int, refit: int, run: ScenarioRun) -> dict[str, Any]:
    first = run.first_alert_after_change(WINDOW)
    delay = run.detection_delay_s(WINDOW)
    weekly = evaluated([r for r in run.reports if r.window == WINDOW])
    return {"scenario": kind, "seed": seed, "refit_every": refit,
            "change_day": round(day(run.change_ms), 1),
            "delay_days": None if delay is None else round(delay / 86400, 1),
            "within_two_windows": delay is not None and delay * 1000 <= 2 * WINDOW_MS,
            "alerts": [a.alert for a in first.alerts] if first else [],
            "detail": [a.detail for a in first.alerts] if first else [],
            "alerts_before_change": sum(bool(r.alerts) for r in weekly if end_ms(r) <= run.change_ms),
            "events": run.events, "seconds": round(run.seconds, 1)}


def series(run: ScenarioRun) -> dict[str, list[float]]:
    weekly = evaluated([r for r in run.reports if r.window == WINDOW])
    return {"day": [round(day(end_ms(r)), 1) for r in weekly],
            "composition_shift": [r.composition_shift for r in weekly],
            "population_shrink": [r.population_shrink for r in weekly],
            "feature_psi": [max((v for f, v in r.feature_psi.items()
                                 if f not in r.time_driven_features), default=0.0) for r in weekly]}


def forecasts(runs: dict[tuple[str, int, int], ScenarioRun],
              frozen: dict[tuple[str, int], ScenarioRun]) -> list[dict[str, Any]]:
    """The migration forecast's error per scenario and re-fit cadence, over the seeds' pairs."""
    out = []
    groups = [((k, f, basis), [r for (k2, _, f2), r in runs.items() if (k2, f2) == (k, f)], same)
              for k in KINDS for f in sorted({f for _, _, f in runs})
              for basis, same in (("all pairs", False), ("same model version", True))]
    groups += [((k, None, "model frozen"), [r for (k2, _), r in frozen.items() if k2 == k], False)
               for k in KINDS if any(k2 == k for k2, _ in frozen)]
    for (kind, refit, basis), group, same in groups:
        row: dict[str, Any] = {"scenario": kind, "refit_every": refit, "pairs_read": basis}
        for part, origins in (("", None), ("_before", True), ("_after", False)):
            if origins is not None and kind == "stationary":
                continue
            errs = [_errors(run, same, origins) for run in group]
            row[f"pairs{part}"] = sum(int(e.get("pairs", 0)) for e in errs)
            for key in ("markov_1", "no_change_1", "markov_2", "no_change_2"):
                weighted = [(e[key], e[f"pairs_{key[-1]}"]) for e in errs if key in e]
                if weighted:
                    row[key + part] = sum(v * n for v, n in weighted) / sum(n for _, n in weighted)
        out.append(row)
    return out


def _errors(run: ScenarioRun, same: bool, before: bool | None) -> dict[str, float | int]:
    """The run's forecast errors on its evaluated weekly origins; ``before``: only those whose
    window ends before the planted change (True) or after it (False)."""
    weekly = [r for r in run.reports if r.window == WINDOW]
    return forecast_errors(weekly, scored=[r for r in evaluated(weekly) if before is None
                                           or (end_ms(r) <= run.change_ms) == before],
                           same_model=same)


def _mae(f: dict[str, Any], h: int) -> str:
    if f"markov_{h}" not in f:
        return "-"
    return f"{f[f'markov_{h}']:.2f} / {f[f'no_change_{h}']:.2f}"


def _split(f: dict[str, Any], h: int) -> str:
    parts = [f[f"markov_{h}_{p}"] - f[f"no_change_{h}_{p}"] if f"markov_{h}_{p}" in f else None
             for p in ("before", "after")]
    return " / ".join("-" if d is None else f"{d:+.2f}" for d in parts)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(KINDS) + 1, figsize=(4 * (len(KINDS) + 1), 3.8))
    for ax, kind in zip(axes, KINDS, strict=False):
        for key, s in result["series"].items():
            if not key.startswith(f"{kind}/"):
                continue
            ax.plot(s["day"], s["composition_shift"], color="tab:blue", alpha=0.5)
            ax.plot(s["day"], s["population_shrink"], color="tab:red", alpha=0.5)
        ax.axhline(0.15, color="grey", ls=":", lw=1)
        if kind != "stationary":
            ax.axvline(result["detections"][0]["change_day"], color="black", ls="--", lw=1)
        ax.set(title=kind, xlabel="window end (day)", ylim=(0, 0.6))
    axes[0].set_ylabel("blue: composition shift, red: population shrink")
    fa = result["false_alarms"]
    names = list(ALERT_NAMES)
    axes[-1].barh(names, [fa["max_of_threshold"][n] for n in names], color="tab:orange")
    axes[-1].axvline(1.0, color="grey", ls=":")
    axes[-1].set(title=f"stationary: highest figure / threshold\n({fa['windows']} windows)",
                 xlim=(0, 1.2))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(result: dict[str, Any], broker: str) -> str:
    fa = result["false_alarms"]
    md = [f"Drift alerts, engine in-process on Valkey; broker: {broker}", "",
          f"False alarms on stationary ({fa['windows']} weekly windows, seeds "
          f"{result['seeds']}, re-fit every {result['refit_every']} batches"
          f"{', value model re-fitted before each, sweep after every batch' if result['value_model'] else ''}; value "
          f"figures evaluated in {fa['value_evaluated']}, compared {fa['value_basis']}; "
          "target <= 5%):", "",
          "| alert | windows alerting | rate | highest figure / threshold |", "|---|---|---|---|"]
    md += [f"| {n} | {fa['by_alert'][n]} | {fa['rate'][n]:.1%} | {fa['max_of_threshold'][n]:.2f} |"
           for n in ALERT_NAMES]
    md += ["", "| scenario | seed | re-fit every | delay (days) | within 2 windows | first alerts "
           "| alerting before change |", "|---|---|---|---|---|---|---|"]
    md += [f"| {d['scenario']} | {d['seed']} | {d['refit_every'] or '-'} | {d['delay_days']} | "
           f"{d['within_two_windows']} | {', '.join(d['alerts']) or '-'} | {d['alerts_before_change']} |"
           for d in result["detections"]]
    md += ["", f"Migration forecast, {WINDOW} windows: mean absolute error of the segments' "
           "active_share in share points (Markov / no change) one and two windows ahead, over "
           f"seeds {result['seeds']}", "",
           "Forecast minus no change on the origins before / after the planted change: a "
           "forecast from past flows cannot see a change its window ends before.", "",
           "| scenario | re-fit every | pairs read | pairs | 1 window | 2 windows "
           "| 1 window, before / after | 2 windows, before / after |",
           "|---|---|---|---|---|---|---|---|"]
    md += [f"| {f['scenario']} | {f['refit_every'] if f['refit_every'] is not None else '-'} | "
           f"{f['pairs_read']} | {f['pairs']} | {_mae(f, 1)} | {_mae(f, 2)} | "
           f"{_split(f, 1)} | {_split(f, 2)} |" for f in result["forecast_mae"]]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="5,6,7")
    ap.add_argument("--refit-every", default="0,30", help="re-fit cadences in batches (0: none)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="scenarios to run (stationary always)")
    ap.add_argument("--value-model", action="store_true",
                    help="re-fit the value model before each leader re-fit, sweep after each batch")
    ap.add_argument("--frozen-model", action="store_true",
                    help="also score the forecast on runs that keep the first global model")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    refits = [int(s) for s in args.refit_every.split(",")]
    kinds = ["stationary", *(k for k in args.kinds.split(",") if k in KINDS and k != "stationary")]
    value_model = args.value_model
    broker_name = announce(NO_BROKER)
    OUT.mkdir(exist_ok=True)
    plan = [(k, s, f) for f in refits for k in kinds for s in seeds]
    with valkey_only() as st, ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run, k, st.redis_url, s, f, False, value_model) for k, s, f in plan]
        frozen_futures = {(k, s): pool.submit(_run, k, st.redis_url, s, 0, True, value_model)
                          for k in kinds for s in seeds} if args.frozen_model else {}
        runs = {p: fut.result() for p, fut in zip(plan, futures, strict=True)}
        frozen = {p: fut.result() for p, fut in frozen_futures.items()}
    stationary = [run for (k, _, _), run in runs.items() if k == "stationary"]
    result = {"seeds": seeds, "refit_every": refits, "value_model": value_model,
              "false_alarms": false_alarms(stationary),
              "detections": [detection(k, s, f, run) for (k, s, f), run in runs.items()
                             if k != "stationary"],
              "series": {f"{k}/{s}/{f}": series(run) for (k, s, f), run in runs.items()},
              "forecast_mae": forecasts(runs, frozen)}
    (OUT / "drift_scenarios.json").write_text(json.dumps(stamped(result, NO_BROKER), indent=1))
    md = markdown(result, broker_name)
    (OUT / "drift_scenarios.md").write_text(md)
    plot(result, OUT / "drift_scenarios.png")
    print(md)


if __name__ == "__main__":
    run_script(main)
