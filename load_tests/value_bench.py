"""Customer value against what the generator's customers then do, with its anchors (issue 19).

    python load_tests/value_bench.py [--customers 3000 --days 365 --holdout-days 90 --seeds 3]

The generator plants a lapse process and visit rhythm per persona that is not
the buy-till-you-die model (:mod:`streamseg.generate.lifecycle`). Over
``--days`` days it simulates ``--customers`` customers; the last
``--holdout-days`` are the **holdout**, the rest the **calibration** period.
Every customer with an order in the calibration period is scored as of the
cut-off, three ways:

- **engine**: the calibration period's events go through the real
  :class:`~streamseg.engine.Engine` on a real Valkey in event-time order (the
  leader's re-fit once a simulated week, as its timer does), then every
  customer is re-scored at the cut-off and its stored value is read;
- **offline**: pymc-marketing's BetaGeoModel and GammaGammaModel fitted (MAP)
  on every scored customer's calibration orders: what the library gives;
- **recency**: days since the last order, nothing else.

Compared with the holdout: the AUC (scikit-learn) of each ranking for "buys
again in the holdout" (churn risk, higher = less likely; recency: longer
silence = less likely), and the total predicted versus actual holdout
purchases and spend (orders, refunds not deducted). Repeated for ``--seeds``
seeds (a new population and history each); the targets are on the means.
Saved to ``load_tests/results/value.json`` and ``value.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `common`, also when a test loads this file

import argparse
import json
import logging
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from common import NO_BROKER, announce, run_script
from quality_bench import END_MS, RESULTS
from sklearn.metrics import roc_auc_score

from streamseg.generate import GeneratedEvent, assign_personas, simulate
from streamseg.generate.lifecycle import Lifecycle
from streamseg.timeunits import DAY_MS


@dataclass(frozen=True)
class Config:
    customers: int = 3000
    days: float = 365.0
    holdout_days: float = 90.0
    seeds: tuple[int, ...] = (1, 2, 3)
    engine: bool = True  # False: the offline anchors only (no Valkey, no engine)

    @property
    def cut_ms(self) -> int:
        return END_MS - int(self.holdout_days * DAY_MS)


@dataclass
class History:
    """One seed's simulated history, split at the cut-off."""

    truth: dict[str, str]
    calibration: list[GeneratedEvent]  # orders and refunds before the cut-off, in time order
    orders: dict[str, list[tuple[int, float]]]  # calibration orders per customer: (ts, amount)
    holdout_orders: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    holdout_spend: dict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass
class Scores:
    """One method's figures on one seed."""

    auc: float  # churn ranking against "buys again in the holdout"
    purchases: float  # total predicted holdout purchases
    spend: float  # total predicted holdout spend
    purchases_error: float = 0.0  # predicted / actual - 1
    spend_error: float = 0.0


@dataclass
class SeedResult:
    seed: int
    customers_scored: int
    buy_again: float  # share of scored customers with an order in the holdout
    actual_purchases: int
    actual_spend: float
    methods: dict[str, Scores]
    seconds: float


# -- the data -----------------------------------------------------------------------


def history(cfg: Config, seed: int) -> History:
    """Simulate ``cfg.days`` under the planted lifecycle and split it at the cut-off."""
    truth = assign_personas(cfg.customers, seed=seed)
    cut = cfg.cut_ms
    h = History(truth, [], defaultdict(list))
    for ev in simulate(truth, days=cfg.days, end_ms=END_MS, seed=seed, scenario=Lifecycle(seed)):
        p = ev.payload
        is_order = ev.topic_role == "transactions" and not p["refund"]
        if ev.ts_ms < cut:
            if ev.topic_role == "transactions":
                h.calibration.append(ev)
            if is_order:
                h.orders[ev.customer_id].append((ev.ts_ms, p["amount"]))
        elif is_order:
            h.holdout_orders[ev.customer_id] += 1
            h.holdout_spend[ev.customer_id] += p["amount"]
    return h


def rfm(orders: dict[str, list[tuple[int, float]]], cut_ms: int) -> pd.DataFrame:
    """The library's inputs per customer with an order: repeat orders, recency, age (days), mean
    value of the repeat orders (0 with none), as pymc-marketing's ``rfm_summary`` defines them
    (but per order, not per day)."""
    rows = []
    for cid in sorted(orders):
        ts = [t for t, _ in orders[cid]]
        amounts = [a for _, a in orders[cid]]
        repeat = amounts[1:]
        rows.append({
            "customer_id": cid, "frequency": len(repeat),
            "recency": (ts[-1] - ts[0]) / DAY_MS, "T": (cut_ms - ts[0]) / DAY_MS,
            "monetary_value": float(np.mean(repeat)) if repeat else 0.0,
        })
    return pd.DataFrame(rows)


# -- the anchors ----------------------------------------------------------------------


@dataclass
class Predictions:
    """Per customer (in the order of the rfm frame): churn risk, holdout purchases and spend."""

    churn_risk: np.ndarray
    purchases: np.ndarray
    spend: np.ndarray


def offline(data: pd.DataFrame, horizon_days: float) -> Predictions:
    """pymc-marketing's BG/NBD and Gamma-Gamma, fitted by MAP on ``data``: churn risk is the
    probability of no purchase over the horizon; spend = expected purchases x expected order value."""
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    logging.getLogger("pymc").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]])
        bg.fit(method="map", progressbar=False)
        purchases = bg.expected_purchases(future_t=horizon_days).values.ravel()
        no_buy = bg.expected_probability_no_purchase(t=horizon_days).values.ravel()
        repeat = data[data.frequency > 0]
        gg = GammaGammaModel(data=repeat[["customer_id", "frequency", "monetary_value"]])
        gg.fit(method="map", progressbar=False)
        order_value = gg.expected_customer_spend(
            data[["customer_id", "frequency", "monetary_value"]]).values.ravel()
    return Predictions(no_buy, purchases, purchases * order_value)


def recency(data: pd.DataFrame) -> np.ndarray:
    """Days since the last order: the longer, the likelier the customer is gone."""
    return (data["T"] - data["recency"]).to_numpy()


# -- scoring ---------------------------------------------------------------------------


def score(pred: Predictions, bought: np.ndarray, actual: tuple[float, float]) -> Scores:
    """AUC of the churn risk for buying again, and predicted totals against ``actual``."""
    auc = float(roc_auc_score(bought, -pred.churn_risk))
    purchases, spend = float(pred.purchases.sum()), float(pred.spend.sum())
    return Scores(round(auc, 4), round(purchases, 1), round(spend, 1),
                  round(purchases / actual[0] - 1, 4), round(spend / actual[1] - 1, 4))


def run_seed(cfg: Config, seed: int) -> SeedResult:
    """Simulate one seed, score every calibration buyer each way, compare with the holdout."""
    started = time.perf_counter()
    h = history(cfg, seed)
    data = rfm(h.orders, cfg.cut_ms)
    cids = data["customer_id"].tolist()
    bought = np.array([h.holdout_orders.get(c, 0) > 0 for c in cids])
    actual = (float(sum(h.holdout_orders.get(c, 0) for c in cids)),
              float(sum(h.holdout_spend.get(c, 0.0) for c in cids)))
    silence = recency(data)
    none = np.full(len(cids), np.nan)
    methods = {
        "offline": score(offline(data, cfg.holdout_days), bought, actual),
        "recency": score(Predictions(silence, none, none), bought, actual),
    }
    return SeedResult(seed, len(cids), round(float(bought.mean()), 4), int(actual[0]),
                      round(actual[1], 1), methods, round(time.perf_counter() - started, 1))


# -- the report ------------------------------------------------------------------------


def summary(results: list[SeedResult]) -> dict[str, dict[str, float]]:
    """Per method, the mean over seeds of each figure."""
    out: dict[str, dict[str, float]] = {}
    for name in results[0].methods:
        rows = [asdict(r.methods[name]) for r in results]
        out[name] = {k: round(float(np.mean([row[k] for row in rows])), 4) for k in rows[0]}
    return out


def targets(mean: dict[str, dict[str, float]]) -> dict[str, bool]:
    """The issue's targets on the means (engine against the offline fit and recency)."""
    if "engine" not in mean:
        return {}
    e = mean["engine"]
    return {
        "auc_within_0.01_of_offline": abs(e["auc"] - mean["offline"]["auc"]) <= 0.01,
        "auc_0.02_above_recency": e["auc"] >= mean["recency"]["auc"] + 0.02,
        "purchases_within_10pct": abs(e["purchases_error"]) <= 0.10,
        "spend_within_15pct": abs(e["spend_error"]) <= 0.15,
    }


def markdown(cfg: Config, results: list[SeedResult], mean: dict[str, dict[str, float]]) -> str:
    lines = [
        f"customers {cfg.customers}, {cfg.days:g} days, holdout {cfg.holdout_days:g} days, "
        f"seeds {', '.join(str(s) for s in cfg.seeds)}",
        "",
        "| seed | method | scored | buy again | AUC | purchases pred/actual | spend pred/actual |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, s in r.methods.items():
            pur = "-" if np.isnan(s.purchases) else f"{s.purchases:,.0f} / {r.actual_purchases:,}"
            spend = "-" if np.isnan(s.spend) else f"{s.spend:,.0f} / {r.actual_spend:,.0f}"
            lines.append(f"| {r.seed} | {name} | {r.customers_scored} | {r.buy_again:.3f} | "
                         f"{s.auc:.4f} | {pur} | {spend} |")
    lines += ["", "| mean over seeds | AUC | purchases error | spend error |", "|---|---|---|---|"]
    for name, m in mean.items():
        lines.append(f"| {name} | {m['auc']:.4f} | {m['purchases_error']:+.1%} | "
                     f"{m['spend_error']:+.1%} |")
    return "\n".join(lines)


def bench(cfg: Config) -> dict[str, Any]:
    results = [run_seed(cfg, seed) for seed in cfg.seeds]
    mean = summary(results)
    return {"broker": NO_BROKER, "config": {**asdict(cfg), "seeds": list(cfg.seeds)},
            "seeds": [asdict(r) for r in results], "mean": mean, "targets": targets(mean),
            "markdown": markdown(cfg, results, mean)}


def save(res: dict[str, Any], name: str = "value", out: Path = RESULTS) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{name}.md").write_text(res["markdown"] + "\n")
    return out / f"{name}.json", out / f"{name}.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Config()
    ap.add_argument("--customers", type=int, default=d.customers)
    ap.add_argument("--days", type=float, default=d.days)
    ap.add_argument("--holdout-days", type=float, default=d.holdout_days)
    ap.add_argument("--seeds", type=int, default=len(d.seeds),
                    help="how many seeds (1, 2, ...); the targets are on their means")
    ap.add_argument("--offline-only", action="store_true",
                    help="the anchors only: no Valkey, no engine")
    a = ap.parse_args()
    cfg = Config(customers=a.customers, days=a.days, holdout_days=a.holdout_days,
                 seeds=tuple(range(1, a.seeds + 1)), engine=not a.offline_only)
    announce(NO_BROKER)
    res = bench(cfg)
    print(res["markdown"])
    print("targets:", res["targets"])
    paths = save(res)
    print(f"\nsaved {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    run_script(main)
