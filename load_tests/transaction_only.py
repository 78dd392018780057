"""Segments on a transaction-only history (no clickstream), replayed through a real worker (issue 20).

    python load_tests/transaction_only.py [--customers 3000 --days 120 --future-days 30 --runs 2]

The generator's planted personas produce a history; only its orders and
refunds are kept. The first ``days - future-days`` go to a CSV that
``streamseg replay`` sends at full speed into a fresh broker's topics, read by
one real ``streamseg worker`` (event clock, defaults but ``--segments``); the
final memberships are read from Valkey. The last ``--future-days`` say who
**never bought again**. Compared on the same customers:

- **engine**: the worker's final segments (``--runs`` replays of the same file,
  each with fresh topics and key prefix; the first is scored, and the
  adjusted Rand index between runs shows how reproducible a replay is);
- **offline**: scikit-learn KMeans (same k, ``n_init=10``) on the same model
  inputs at the end of the history, standardized;
- **recency quintiles**: customers split by days since their last order.

Per method: ARI against the planted personas, the segments holding at least
5% of customers, and the ratio between the worst and the best such segment's
share of customers who never bought again (higher: the segments tell churners
apart). Saved to load_tests/results/transaction_only.json and .md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `common`, also when a test loads this file

import argparse
import asyncio
import csv
import json
import os
import subprocess
import time
from collections import defaultdict
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from common import add_broker_argument, announce, run_script, stamped
from drain_bench import processed
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from streamseg.devstack import DevStack, ManagedProcess, free_port
from streamseg.devstack.processes import wait_for_port
from streamseg.events.models import TransactionEvent
from streamseg.features import reference
from streamseg.features.keys import Keys
from streamseg.features.registry import HALFLIFE_DAYS, MODEL_FEATURES, model_input
from streamseg.generate import assign_personas, simulate
from streamseg.timeunits import DAY_MS, HOUR_MS

RESULTS = Path(__file__).parent / "results"
ORDER_MAP = ("customer_id=cust,ts=when,amount=value,currency=cur,items=n,categories=cats,"
             "discount_amount=disc,refund=is_refund")
MIN_SHARE = 0.05


def history(customers: int, days: float, future_days: float, seed: int, path: Path
            ) -> tuple[dict[str, str], list[dict], set[str], int]:
    """Truth, the history's transactions (written to ``path``), who bought after it, its end."""
    end_ms = int(time.time() * 1000) - HOUR_MS
    cut_ms = end_ms - int(future_days * DAY_MS)
    truth = assign_personas(customers, seed=seed)
    past, later = [], set()
    for ev in simulate(truth, days=days, end_ms=end_ms, seed=seed):
        if ev.topic_role != "transactions":
            continue
        p = ev.payload
        if p["ts"] < cut_ms:
            past.append(p)
        elif not p["refund"]:
            later.add(p["customer_id"])
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cust", "when", "value", "cur", "n", "cats", "disc", "is_refund"])
        for p in past:
            w.writerow([p["customer_id"], p["ts"], p["amount"], p["currency"], p["items"],
                        "|".join(p["categories"]), p["discount_amount"], p["refund"]])
    return truth, past, later, max(p["ts"] for p in past)


async def memberships(redis_url: str, prefix: str) -> dict[str, int]:
    keys, client, out = Keys(prefix), aioredis.Redis.from_url(redis_url), {}
    async for key in client.scan_iter(match=keys.customer_pattern(), count=1000):
        seg = await client.hget(key, "seg")
        if seg is not None:
            out[keys.customer_of(key.decode())] = int(float(seg))
    await client.aclose()
    return out


def replay_run(st: DevStack, csv_path: Path, n_events: int, segments: int, tag: str,
               load_first: bool) -> dict[str, int]:
    """One replay of the file through a fresh worker (reading along, or started once the
    history is in the topics); its final memberships once they settle."""
    port = free_port()
    env = {**os.environ, **st.client_env, "STREAMSEG_LOG_LEVEL": "warn", "STREAMSEG_WEB_PORT": str(port),
           "STREAMSEG_N_SEGMENTS": str(segments), "STREAMSEG_KEY_PREFIX": tag,
           "STREAMSEG_APP_ID": f"txn-only-{tag}", "STREAMSEG_DEDUP_HORIZON_DAYS": "400",
           **{f"STREAMSEG_TOPIC_{t.upper()}": f"{tag}.{t}" for t in
              ("clickstream", "transactions", "dlq", "segment_updates", "drift", "segments", "audit", "model")}}
    replay = [sys.executable, "-m", "streamseg", "replay", str(csv_path), "--map", ORDER_MAP,
              "--json", "--no-progress"]
    if load_first:
        subprocess.run(replay, env=env, capture_output=True, check=True)
    worker = ManagedProcess(f"worker-{tag}", [sys.executable, "-m", "streamseg", "worker"],
                            st.dir / f"worker-{tag}.log", env).start()
    st.processes.append(worker)
    wait_for_port(port, 60, worker.proc)
    if not load_first:
        subprocess.run(replay, env=env, capture_output=True, check=True)
    while processed(port) < n_events:
        time.sleep(0.5)
    last: dict[str, int] = {}
    while True:  # settled: two reads a second apart agree
        now = asyncio.run(memberships(st.redis_url, tag))
        if now and now == last:
            worker.stop()
            return now
        last = now
        time.sleep(1.0)


def offline_and_recency(past: list[dict], now_ms: int, k: int, seed: int
                        ) -> tuple[dict[str, int], dict[str, int]]:
    """scikit-learn KMeans on the standardized model inputs, and recency quintiles, at ``now_ms``."""
    by: dict[str, list[TransactionEvent]] = defaultdict(list)
    for p in past:
        by[p["customer_id"]].append(TransactionEvent.model_validate(p))
    ids = sorted(by)
    feats = [reference.features(by[c], now_ms, horizon_ms=400 * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
             for c in ids]
    x = np.array([[model_input(f)[n] for n in MODEL_FEATURES] for f in feats])
    labels = KMeans(k, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(x))
    recency = np.array([f["days_since_last_purchase"] for f in feats])
    quintile = np.searchsorted(np.quantile(recency, [0.2, 0.4, 0.6, 0.8]), recency, side="right")
    return dict(zip(ids, map(int, labels), strict=True)), dict(zip(ids, map(int, quintile), strict=True))


def score(seg: dict[str, int], truth: dict[str, str], later: set[str]) -> dict[str, Any]:
    """ARI against the personas; the >=5% segments and their never-bought-again shares."""
    ids = sorted(seg)
    shares = []
    for s in sorted(set(seg.values())):
        members = [c for c in ids if seg[c] == s]
        if len(members) >= MIN_SHARE * len(ids):
            shares.append(sum(c not in later for c in members) / len(members))
    return {"ari_vs_personas": round(adjusted_rand_score([truth[c] for c in ids], [seg[c] for c in ids]), 3),
            "segments_over_5pct": len(shares),
            "never_again_shares": [round(s, 3) for s in sorted(shares)],
            "never_again_ratio": round(max(shares) / min(shares), 2) if min(shares, default=0) > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_broker_argument(ap)
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--days", type=float, default=120.0)
    ap.add_argument("--future-days", type=float, default=30.0)
    ap.add_argument("--segments", type=int, default=5)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--load-first", action="store_true",
                    help="replay into the topics before the worker starts (default: it reads along)")
    args = ap.parse_args()
    broker_name = announce(args.broker)
    with DevStack(broker=args.broker) as st:
        csv_path = st.dir / "orders.csv"
        truth, past, later, now_ms = history(args.customers, args.days, args.future_days, args.seed, csv_path)
        runs = [replay_run(st, csv_path, len(past), args.segments, f"r{i}", args.load_first)
                for i in range(args.runs)]
    offline, recency = offline_and_recency(past, now_ms, args.segments, args.seed)
    common_ids = sorted(set(offline).intersection(*runs))
    between = [round(adjusted_rand_score([runs[0][c] for c in common_ids], [r[c] for c in common_ids]), 3)
               for r in runs[1:]]
    result = stamped({
        "customers_with_orders": len(offline), "events": len(past), "days": args.days - args.future_days,
        "segments": args.segments, "load_first": args.load_first, "engine": score(runs[0], truth, later),
        "engine_ari_between_runs": between, "offline_kmeans": score(offline, truth, later),
        "recency_quintiles": score(recency, truth, later)}, args.broker)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transaction_only.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [f"| {name} | {r['ari_vs_personas']} | {r['segments_over_5pct']} | {r['never_again_ratio']} |"
            for name, r in (("engine (replayed through a worker)", result["engine"]),
                            ("offline k-means", result["offline_kmeans"]),
                            ("recency quintiles", result["recency_quintiles"]))]
    table = "\n".join([f"broker: {broker_name}; {len(offline)} customers, {len(past)} transactions; "
                       f"engine ARI between replays: {between}", "",
                       "| method | ARI vs personas | segments >= 5% | never-bought-again worst/best |",
                       "|---|---|---|---|", *rows])
    (RESULTS / "transaction_only.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    run_script(main)
