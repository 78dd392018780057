"""Customer value against what the generator's customers then do, with its anchors (issue 19).

    python load_tests/value_bench.py [--customers 3000 --days 365 --holdout-days 90 --seeds 3]

The generator plants a lapse process and visit rhythm per persona that is not
the buy-till-you-die model (:mod:`streamseg.generate.lifecycle`). Over
``--days`` days it simulates ``--customers`` customers; the last
``--holdout-days`` are the **holdout**, the rest the **calibration** period.
Every customer with an order in the calibration period is scored as of the
cut-off, five ways:

- **engine**: the calibration period's events (clickstream, orders and refunds)
  go through the real :class:`~streamseg.engine.Engine` on a real Valkey in
  event-time order, the leader fits the value model on its sample at the cut-off
  (with ``--refit-days N`` it also refreshes every N simulated days, which changes
  no value), and every customer's ``value`` is read as ``GET /v1/customers/{id}``
  shows it;
- **offline**: the library's fits on the same inputs as the engine's: pymc-marketing's
  BetaGeoModel and GammaGammaModel fitted (MAP) on every scored customer's calibration
  orders, and a BetaGeoModel on *active days* (a UTC day with any event of the
  customer: a visit, an order or a refund) of every customer active in the
  calibration period. The active-day fit's P(alive) says whether the customer is
  still there, the purchase fit's rate how likely one who is buys:
  churn risk = 1 - P_a + P_a ((alpha + T) / (alpha + T + h))^(r + x) (P_a of the
  active-day fit; r, alpha, x, T of the purchase fit); expected purchases and spend
  are the purchase fits';
- **offline-purchase**: the purchase fits alone (churn risk: BG/NBD's probability of
  no purchase over the horizon), as the engine scored before it read active days;
- **recency**: days since the last order, nothing else;
- **recency-active**: days since the last active day.

Compared with the holdout: the AUC (scikit-learn) of each ranking for "buys
again in the holdout" (churn risk, the probability of no purchase over the
holdout; recency: longer silence = less likely), and the total predicted versus
actual holdout purchases and spend. As the engine counts them, a purchase is a
purchase day (a UTC day with an order) and spend is net of refunds (in the
calibration: the mean spend of the repeat purchase days times the share not
refunded; in the holdout: its orders minus its refunds). Repeated for
``--seeds`` seeds (a new population and history each); the targets are on the
means. Saved to ``load_tests/results/value.json`` and ``value.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `common`, also when a test loads this file

import argparse
import asyncio
import json
import logging
import time
import uuid
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from common import NO_BROKER, announce, run_script, valkey_only
from prometheus_client import CollectorRegistry
from quality_bench import END_MS, RESULTS, RecordingPublisher, read_states
from sklearn.metrics import roc_auc_score

from streamseg.api.lookup import customer_body
from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.generate import GeneratedEvent, assign_personas, simulate
from streamseg.generate.lifecycle import Lifecycle
from streamseg.metrics import Metrics
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS


@dataclass(frozen=True)
class Config:
    customers: int = 3000
    days: float = 365.0
    holdout_days: float = 90.0
    seeds: tuple[int, ...] = (1, 2, 3)
    engine: bool = True  # False: the offline anchors only (no Valkey, no engine)
    #: the leader's catalog refresh every so many days of event time (None: none); the value
    #: model scored is the one the leader fits at the cut-off either way
    refit_days: float | None = None
    retention_days: float | None = None  # STREAMSEG_RETENTION_DAYS for the engine (None: default)
    batch: int = 500

    @property
    def cut_ms(self) -> int:
        return END_MS - int(self.holdout_days * DAY_MS)


@dataclass
class History:
    """One seed's simulated history, split at the cut-off."""

    truth: dict[str, str]
    calibration: list[GeneratedEvent]  # orders and refunds before the cut-off, in time order
    #: every event before the cut-off (clickstream too), in time order: what the engine reads
    stream: list[GeneratedEvent] = field(default_factory=list)
    #: per customer: the UTC days with any event (visit, order, refund) before the cut-off
    active_days: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    #: per customer: the holdout's purchase days (UTC days with an order) and net spend
    holdout_days: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    holdout_spend: dict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass
class Scores:
    """One method's figures on one seed."""

    auc: float  # churn ranking against "buys again in the holdout"
    purchases: float  # total predicted holdout purchases
    spend: float  # total predicted holdout spend
    purchases_error: float = 0.0  # predicted / actual - 1
    spend_error: float = 0.0
    unscored: int = 0  # customers without a churn risk (left out of the AUC)


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
    h = History(truth, [])
    for ev in simulate(truth, days=cfg.days, end_ms=END_MS, seed=seed, scenario=Lifecycle(seed)):
        if ev.ts_ms < cfg.cut_ms:
            h.active_days[ev.customer_id].add(ev.ts_ms // DAY_MS)
            h.stream.append(ev)
        if ev.topic_role != "transactions":
            continue
        if ev.ts_ms < cfg.cut_ms:
            h.calibration.append(ev)
            continue
        refund, amount = ev.payload["refund"], ev.payload["amount"]
        h.holdout_spend[ev.customer_id] += -amount if refund else amount
        if not refund:
            h.holdout_days[ev.customer_id].add(ev.ts_ms // DAY_MS)
    return h


def rfm(calibration: list[GeneratedEvent], cut_ms: int) -> pd.DataFrame:
    """The library's summary of the calibration orders, per customer with one, in days.

    pymc-marketing's ``rfm_summary`` on one row per purchase day (its spend summed):
    repeat purchase days, recency, age and the mean spend of the repeat days; that
    spend is scaled by the customer's share not refunded (as the engine does).
    """
    from pymc_marketing.clv.utils import rfm_summary

    tx = pd.DataFrame([ev.payload for ev in calibration])
    tx["day"] = pd.to_datetime(tx["ts"] // DAY_MS * DAY_MS, unit="ms")
    orders = tx[~tx["refund"]]
    daily = orders.groupby(["customer_id", "day"], as_index=False)["amount"].sum()
    data = rfm_summary(daily, "customer_id", "day", "amount", time_unit="D",
                       observation_period_end=pd.to_datetime(cut_ms, unit="ms"))
    gross = orders.groupby("customer_id")["amount"].sum()
    refunded = tx[tx["refund"]].groupby("customer_id")["amount"].sum()
    kept = (1.0 - refunded.reindex(gross.index, fill_value=0.0) / gross).clip(lower=0.0)
    data["monetary_value"] *= kept.reindex(data["customer_id"]).to_numpy()
    return data.sort_values("customer_id").reset_index(drop=True)


def active_summary(active_days: dict[str, set[int]], cut_ms: int) -> pd.DataFrame:
    """The BG/NBD summary of active days, per customer active before the cut-off, in days:
    active days after the first, first to last, first to the cut-off (as ``rfm_summary``)."""
    cut = cut_ms // DAY_MS
    rows = [(c, len(d) - 1.0, float(max(d) - min(d)), float(cut - min(d)))
            for c, d in sorted(active_days.items())]
    return pd.DataFrame(rows, columns=["customer_id", "frequency", "recency", "T"])


# -- the anchors ----------------------------------------------------------------------


@dataclass
class Predictions:
    """Per customer (in the order of the rfm frame): churn risk, holdout purchases and spend."""

    churn_risk: np.ndarray
    purchases: np.ndarray
    spend: np.ndarray


def _bg(data: pd.DataFrame) -> Any:
    """pymc-marketing's BetaGeoModel fitted by MAP on ``data`` (frequency, recency, T)."""
    from pymc_marketing.clv import BetaGeoModel

    logging.getLogger("pymc").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]])
        bg.fit(method="map", progressbar=False)
    return bg


def offline_active(data: pd.DataFrame, active: pd.DataFrame, horizon_days: float,
                   bg: Any = None) -> np.ndarray:
    """The churn risk of ``data``'s customers from the library's fits on active days and on
    purchase days (``bg``, fitted on ``data`` if not given; see the module doc): P(no purchase
    over the horizon) = P(gone by the active days) + P(there) x P(no purchase at the purchase
    fit's posterior rate)."""
    act = _bg(active)
    alive = act.expected_probability_alive(
        data=active.set_index("customer_id").loc[data["customer_id"]].reset_index()
    ).values.ravel()
    fit = (bg or _bg(data)).fit_result
    r, alpha = float(fit["r"].mean()), float(fit["alpha"].mean())
    x, big_t = data["frequency"].to_numpy(), data["T"].to_numpy()
    quiet = ((alpha + big_t) / (alpha + big_t + horizon_days)) ** (r + x)
    return 1.0 - alive + alive * quiet


def offline(data: pd.DataFrame, horizon_days: float, bg: Any = None) -> Predictions:
    """pymc-marketing's BG/NBD (``bg``, fitted on ``data`` if not given) and Gamma-Gamma,
    fitted by MAP on ``data``: churn risk is the probability of no purchase over the horizon;
    spend = expected purchases x expected spend per purchase day."""
    from pymc_marketing.clv import GammaGammaModel

    bg = bg or _bg(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        purchases = bg.expected_purchases(future_t=horizon_days).values.ravel()
        no_buy = bg.expected_probability_no_purchase(t=horizon_days).values.ravel()
        repeat = data[(data.frequency > 0) & (data.monetary_value > 0)]
        gg = GammaGammaModel(data=repeat[["customer_id", "frequency", "monetary_value"]])
        gg.fit(method="map", progressbar=False)
        order_value = gg.expected_customer_spend(
            data[["customer_id", "frequency", "monetary_value"]]).values.ravel()
    return Predictions(no_buy, purchases, purchases * order_value)


def recency(data: pd.DataFrame) -> np.ndarray:
    """Days since the last order: the longer, the likelier the customer is gone."""
    return (data["T"] - data["recency"]).to_numpy()


def recency_active(data: pd.DataFrame, active: pd.DataFrame) -> np.ndarray:
    """Days since the last active day of ``data``'s customers."""
    act = active.set_index("customer_id").loc[data["customer_id"]]
    return (act["T"] - act["recency"]).to_numpy()


# -- the engine ---------------------------------------------------------------------


def engine_settings(cfg: Config, seed: int, redis_url: str) -> Settings:
    """Defaults, but a fresh key prefix, the seed, the holdout as the value horizon and
    ``cfg.retention_days`` if given (the leader's sample leaves out customers silent longer)."""
    kw = {} if cfg.retention_days is None else {"retention_days": cfg.retention_days}
    return Settings(redis_url=redis_url, key_prefix=f"vb{uuid.uuid4().hex[:8]}", seed=seed,
                    value_horizon_days=cfg.holdout_days, **kw)


async def run_engine(cfg: Config, seed: int, h: History, redis_url: str) -> dict[str, dict]:
    """Stream the calibration period through the engine; every customer's ``value`` (as
    ``GET /v1/customers/{id}`` shows it) at the cut-off, after the leader's value fit there."""
    settings = engine_settings(cfg, seed, redis_url)
    keys = Keys(settings.key_prefix)
    store = RedisFeatureStore.from_url(settings.redis_url, keys,
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    engine = Engine(settings, store, build_segmenter(settings),
                    RecordingPublisher(settings.topic_segment_updates, lambda: 0.0),
                    Metrics(CollectorRegistry()))
    topics = {role: settings.topic(role) for role in ("transactions", "clickstream")}
    every = cfg.refit_days * DAY_MS if cfg.refit_days else float("inf")
    next_fit = h.stream[0].ts_ms + every
    try:
        for i in range(0, len(h.stream), cfg.batch):
            await engine.process([
                InMessage(topics[ev.topic_role], 0, i + j, ev.customer_id.encode(),
                          orjson.dumps(ev.payload))
                for j, ev in enumerate(h.stream[i : i + cfg.batch])])
            if engine.clock.clock_ms >= next_fit:
                await engine.leader.refresh_catalog()  # segments and profiles
                next_fit = engine.clock.clock_ms + every
        engine.clock.reach(cfg.cut_ms)  # no event is at or after the cut-off
        await refit_value(engine)
        states = await read_states(store, keys, sorted(h.truth))
    finally:
        await engine.leader.values.close()
        await store.close()
    scorer = engine.leader.value
    return {cid: customer_body(cid, st, names={}, now_ms=cfg.cut_ms, value=scorer)["value"] or {}
            for cid, st in states.items()}


async def refit_value(engine: Engine) -> None:
    """The leader's value fit on its sample, now (its timer's background fit is rate-limited
    in wall-clock time, so a fast stream would see one at most)."""
    leader = engine.leader
    sample = await leader.sample_customers()
    try:
        await leader.values.refit(sample, engine.assigner.model)
    finally:
        await sample.release()


def engine_predictions(values: dict[str, dict], cids: list[str]) -> Predictions:
    """The engine's stored values of ``cids``, as :class:`Predictions` (NaN where none)."""
    def column(name: str) -> np.ndarray:
        return np.array([float(values.get(c, {}).get(name, np.nan)) for c in cids])

    return Predictions(column("churn_risk"), column("expected_purchases"),
                       column("lifetime_value"))


# -- scoring ---------------------------------------------------------------------------


def score(pred: Predictions, bought: np.ndarray, actual: tuple[float, float]) -> Scores:
    """AUC of the churn risk for buying again, and predicted totals against ``actual``.

    Customers without a churn risk (the engine has no value for them) are left out
    of the AUC and counted in ``unscored``; their predictions count as 0.
    """
    known = ~np.isnan(pred.churn_risk)
    auc = float(roc_auc_score(bought[known], -pred.churn_risk[known])) if known.any() else np.nan
    purchases, spend = float(np.nansum(pred.purchases)), float(np.nansum(pred.spend))
    if np.isnan(pred.purchases).all():
        purchases = spend = np.nan
    return Scores(round(auc, 4), round(purchases, 1), round(spend, 1),
                  round(purchases / actual[0] - 1, 4), round(spend / actual[1] - 1, 4),
                  int((~known).sum()))


def run_seed(cfg: Config, seed: int, redis_url: str | None) -> SeedResult:
    """Simulate one seed, score every calibration buyer each way, compare with the holdout."""
    started = time.perf_counter()
    h = history(cfg, seed)
    data = rfm(h.calibration, cfg.cut_ms)
    cids = data["customer_id"].tolist()
    bought = np.array([bool(h.holdout_days.get(c)) for c in cids])
    actual = (float(sum(len(h.holdout_days.get(c, ())) for c in cids)),
              float(sum(h.holdout_spend.get(c, 0.0) for c in cids)))
    silence = recency(data)
    none = np.full(len(cids), np.nan)
    methods = {}
    if redis_url is not None:
        values = asyncio.run(run_engine(cfg, seed, h, redis_url))
        methods["engine"] = score(engine_predictions(values, cids), bought, actual)
    bg = _bg(data)  # the purchase fit, for both offline rows
    purchase = offline(data, cfg.holdout_days, bg)
    active = active_summary(h.active_days, cfg.cut_ms)
    combined = offline_active(data, active, cfg.holdout_days, bg)
    methods |= {
        "offline": score(Predictions(combined, purchase.purchases, purchase.spend), bought,
                         actual),
        "offline-purchase": score(purchase, bought, actual),
        "recency": score(Predictions(silence, none, none), bought, actual),
        "recency-active": score(Predictions(recency_active(data, active), none, none), bought,
                                actual),
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
        f"seeds {', '.join(str(s) for s in cfg.seeds)}; engine: catalog refresh every "
        f"{cfg.refit_days or 'no'} days, value fit at the cut-off, retention "
        f"{cfg.retention_days or 'default (180)'} days",
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
    def error(e: float) -> str:
        return "-" if np.isnan(e) else f"{e:+.1%}"

    for name, m in mean.items():
        lines.append(f"| {name} | {m['auc']:.4f} | {error(m['purchases_error'])} | "
                     f"{error(m['spend_error'])} |")
    return "\n".join(lines)


def bench(cfg: Config, redis_url: str | None) -> dict[str, Any]:
    results = [run_seed(cfg, seed, redis_url) for seed in cfg.seeds]
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
    ap.add_argument("--refit-days", type=float, default=d.refit_days,
                    help="also refresh the catalog (re-fit segments) every so many simulated "
                    "days, as the leader's timer would (slow: minutes per seed); the value "
                    "model scored is the one fitted at the cut-off either way")
    ap.add_argument("--retention-days", type=float, default=None,
                    help="the engine's STREAMSEG_RETENTION_DAYS (default: the setting's 180); "
                    "the leader fits the value model only on customers silent for less")
    ap.add_argument("--redis-url", help="use this Redis/Valkey instead of starting one")
    a = ap.parse_args()
    cfg = Config(customers=a.customers, days=a.days, holdout_days=a.holdout_days,
                 seeds=tuple(range(1, a.seeds + 1)), engine=not a.offline_only,
                 refit_days=a.refit_days, retention_days=a.retention_days)
    announce(NO_BROKER)
    if not cfg.engine:
        res = bench(cfg, None)
    elif a.redis_url:
        res = bench(cfg, a.redis_url)
    else:
        with valkey_only() as stack:
            res = bench(cfg, stack.redis_url)
    print(res["markdown"])
    print("targets:", res["targets"])
    name = "value" if cfg.retention_days is None else f"value-retention-{cfg.retention_days:g}"
    paths = save(res, name)
    print(f"\nsaved {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    run_script(main)
