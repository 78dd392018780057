"""How much room the value benchmark leaves above recency, and what would widen it (issue 19).

    python load_tests/value_ceiling.py [--seeds 3] [--slow-loyal [--engine]]

``load_tests/value_bench.py`` found pymc-marketing's BG/NBD only ~0.005 of AUC above
"days since the last order" while every customer of a persona bought at about its mean
rate; with each customer's own pace planted (:mod:`streamseg.generate.lifecycle`) it is
~0.016. This diagnostic says how much room there is, on the same histories (offline
only, no Valkey):

- the **ceiling**: the AUC of knowing exactly which customers the generator still keeps
  alive at the cut-off (its planted lifetimes), alone and with the offline model's churn
  risk to order the alive among themselves;
- per persona: share alive at the cut-off, repeat purchase days, median gap between
  purchase days, and the median silence of the alive and of the gone;
- a second offline anchor: pymc-marketing's Pareto/NBD (MAP; drop-out at any time, not
  at a purchase), its AUC and total predicted holdout purchases against the actual.

``--slow-loyal`` runs the anchors again with the regular personas buying slowly
(``loyal_high_spender`` x0.12, ``serial_returner`` x0.15, ``email_responder`` x0.2 sessions a
week: gaps of one to three months, as in CDNOW-like data), so a long silence no longer
says "gone" by itself; ``--engine`` adds the engine (as value_bench.py, on a Valkey it
starts). The generator itself is unchanged: the personas are slowed in this process only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import argparse
import dataclasses
import logging
import warnings

import numpy as np
import pandas as pd
from common import NO_BROKER, announce, run_script, valkey_only
from quality_bench import END_MS
from sklearn.metrics import roc_auc_score
from value_bench import Config, History, Predictions, bench, history, offline, recency, rfm

import streamseg.generate.personas as personas
from streamseg.generate.lifecycle import Lifecycle
from streamseg.timeunits import DAY_MS

SLOW = {"loyal_high_spender": 0.12, "serial_returner": 0.15, "email_responder": 0.2}


def alive_at_cut(cfg: Config, seed: int, h: History, cids: list[str]) -> np.ndarray:
    """Whether the generator's planted lifetime of each customer reaches past the cut-off."""
    start = END_MS - int(cfg.days * DAY_MS)
    plans = Lifecycle(seed)
    return np.array([personas._Customer(c, personas.PERSONAS[h.truth[c]], start, END_MS, seed,
                                        plans.plan(c, h.truth[c])).until_ms > cfg.cut_ms
                     for c in cids])


def pareto(data: pd.DataFrame, horizon_days: float) -> Predictions:
    """pymc-marketing's Pareto/NBD fitted by MAP on ``data``: churn risk (no purchase over the
    horizon) and expected purchases (no spend model: NaN)."""
    from pymc_marketing.clv import ParetoNBDModel

    logging.getLogger("pymc").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ParetoNBDModel(data=data[["customer_id", "frequency", "recency", "T"]])
        model.fit(method="map", progressbar=False)
        no_buy = model.expected_purchase_probability(n_purchases=0, future_t=horizon_days)
        purchases = model.expected_purchases(future_t=horizon_days).values.ravel()
    return Predictions(no_buy.values.ravel(), purchases, np.full(len(data), np.nan))


def ceiling(cfg: Config, seed: int) -> None:
    h = history(cfg, seed)
    data = rfm(h.calibration, cfg.cut_ms)
    cids = data["customer_id"].tolist()
    bought = np.array([bool(h.holdout_days.get(c)) for c in cids])
    alive = alive_at_cut(cfg, seed, h, cids)
    risk, silence = offline(data, cfg.holdout_days).churn_risk, recency(data)
    print(f"seed {seed}: {len(cids)} buyers, {alive.mean():.3f} alive at the cut-off, of them "
          f"{bought[alive].mean():.3f} buy again (of the gone {bought[~alive].mean():.3f}); AUC "
          f"recency {roc_auc_score(bought, -silence):.4f}, offline {roc_auc_score(bought, -risk):.4f}, "
          f"alive-at-cut {roc_auc_score(bought, alive):.4f}, alive-at-cut then offline "
          f"{roc_auc_score(bought, alive - 1e-3 * risk):.4f}")
    pnbd = pareto(data, cfg.holdout_days)
    actual = sum(len(h.holdout_days.get(c, ())) for c in cids)
    print(f"  Pareto/NBD: AUC {roc_auc_score(bought, -pnbd.churn_risk):.4f}, holdout purchases "
          f"{pnbd.purchases.sum():,.0f} predicted / {actual:,} actual "
          f"({pnbd.purchases.sum() / actual - 1:+.1%})")
    x, gaps = data["frequency"].to_numpy(), data["recency"].to_numpy()
    who = np.array([h.truth[c] for c in cids])
    for p in sorted(set(who)):
        m = who == p
        rep = m & (x > 0)
        gap = np.median(gaps[rep] / x[rep]) if rep.any() else float("nan")
        quiet = [np.median(silence[m & a]) if (m & a).any() else float("nan") for a in (alive, ~alive)]
        print(f"  {p:20s} {m.sum():5d} buyers, alive {alive[m].mean():.2f}, repeat days "
              f"{x[m].mean():5.1f}, median gap {gap:5.1f} d, median silence alive {quiet[0]:5.1f} "
              f"d / gone {quiet[1]:5.1f} d")


def slow_loyal() -> None:
    """Slow the regular personas down in this process (see the module docstring)."""
    for name, factor in SLOW.items():
        p = personas.PERSONAS[name]
        personas.PERSONAS[name] = dataclasses.replace(
            p, sessions_per_week=p.sessions_per_week * factor)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--slow-loyal", action="store_true")
    ap.add_argument("--engine", action="store_true", help="with --slow-loyal: the engine too")
    a = ap.parse_args()
    cfg = Config(seeds=tuple(range(1, a.seeds + 1)), engine=a.engine)
    announce(NO_BROKER)
    if not a.slow_loyal:
        for seed in cfg.seeds:
            ceiling(cfg, seed)
        return
    slow_loyal()
    if a.engine:
        with valkey_only() as stack:
            res = bench(cfg, stack.redis_url)
    else:
        res = bench(cfg, None)
    print(res["markdown"])
    print("targets:", res["targets"])


if __name__ == "__main__":
    run_script(main)
