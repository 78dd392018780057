"""Detection delay per drift scenario (engine in-process on a real Valkey, event-time windows).

    python load_tests/drift_scenarios.py

Runs stationary, persona_shift, new_persona and shrink with the settings of the
scenario tests (tests/integration/drift_support.py) and saves the first alerting
report of each run plus the delays to load_tests/results/drift_scenarios.{json,md}.
No broker takes part (none is started); the results say so.

It also scores the reports' migration forecast (docs/model.md: migration
forecast): the mean absolute error, in share points, of the one- and two-window
forecasts of the evaluated weekly reports against the shares reported for those
windows, next to the "no change" forecast on the same pairs; over all pairs, and
over the pairs read with one model version (no re-fit in between). With
``--frozen-model`` the four scenarios run again with the first global model kept
(no merge or re-fit after it), so every pair is read with one model: the
forecast's own error, without re-fits moving the segment boundaries.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import NO_BROKER, announce, run_script, stamped, valkey_only

from streamseg.drift.evaluate import end_ms, forecast_errors
from tests.integration.drift_support import WINDOW, WINDOW_MS, day, evaluated
from tests.integration.test_drift_scenarios import _run

OUT = Path(__file__).parent / "results"
KINDS = ("stationary", "persona_shift", "new_persona", "shrink")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frozen-model", action="store_true",
                    help="also score the forecast on runs that keep the first global model")
    frozen_too = ap.parse_args().frozen_model
    broker_name = announce(NO_BROKER)
    OUT.mkdir(exist_ok=True)
    frozen = {}
    with valkey_only() as st, ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        urls = [st.redis_url] * len(KINDS)
        runs = dict(zip(KINDS, pool.map(_run, KINDS, urls), strict=True))
        if frozen_too:
            frozen = dict(zip(KINDS, pool.map(_run, KINDS, urls, [True] * len(KINDS)), strict=True))
    rows, reports, forecasts = [], {}, []
    for kind, run in runs.items():
        weekly = evaluated([r for r in run.reports if r.window == WINDOW])
        false_alarms = [r for r in weekly if r.alerts and end_ms(r) <= run.change_ms]
        first = run.first_alert_after_change(WINDOW) if kind != "stationary" else None
        delay = run.detection_delay_s(WINDOW) if kind != "stationary" else None
        rows.append({"scenario": kind, "change_day": round(day(run.change_ms), 1),
                     "detection_delay_days": None if delay is None else round(delay / 86400, 1),
                     "within_two_windows": None if delay is None else delay * 1000 <= 2 * WINDOW_MS,
                     "alerts": [a.alert for a in first.alerts] if first else [],
                     "alerting_reports": len([r for r in weekly if r.alerts]),
                     "false_alarms_before_change": len(false_alarms), "evaluated_reports": len(weekly),
                     "events": run.events, "seconds": round(run.seconds, 1)})
        if first:
            reports[kind] = json.loads(first.to_bytes())
        every = [r for r in run.reports if r.window == WINDOW]
        for basis, same in (("all pairs", False), ("same model version", True)):
            forecasts.append({"scenario": kind, "pairs_read": basis,
                              **forecast_errors(every, scored=weekly, same_model=same)})
        if kind in frozen:
            every = [r for r in frozen[kind].reports if r.window == WINDOW]
            forecasts.append({"scenario": kind, "pairs_read": "model frozen",
                              **forecast_errors(every, scored=evaluated(every))})
    (OUT / "drift_scenarios.json").write_text(
        json.dumps(stamped({"rows": rows, "first_alerts": reports, "forecast_mae": forecasts},
                           NO_BROKER), indent=1))
    md = [f"Drift detection, engine in-process on Valkey; broker: {broker_name}", "",
          "| scenario | change (day) | delay (days) | within 2 windows | alerts | alerting / evaluated reports |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['scenario']} | {r['change_day']} | {r['detection_delay_days']} | {r['within_two_windows']} "
           f"| {', '.join(r['alerts']) or '-'} | {r['alerting_reports']} / {r['evaluated_reports']} |" for r in rows]
    md += ["", f"Migration forecast, {WINDOW} windows: mean absolute error in share points "
           "(Markov / no change) one and two windows ahead", "",
           "| scenario | pairs read | pairs | 1 window | 2 windows |", "|---|---|---|---|---|"]
    md += [f"| {f['scenario']} | {f['pairs_read']} | {f['pairs']} | {_mae(f, 1)} | {_mae(f, 2)} |"
           for f in forecasts]
    (OUT / "drift_scenarios.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _mae(f: dict[str, float | int], h: int) -> str:
    if f"markov_{h}" not in f:
        return "-"
    return f"{f[f'markov_{h}']:.2f} / {f[f'no_change_{h}']:.2f}"


if __name__ == "__main__":
    run_script(main)
