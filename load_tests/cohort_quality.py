"""Segment quality as cohorts lapse: consecutive passes of new customers, in process (issue 18).

    python load_tests/cohort_quality.py [--customers 2000 --passes 7 --model-active-days 56]
    python load_tests/cohort_quality.py --compare 56,1e6   # 1e6: every silent customer learned

The bench's pool (``streamseg.bench.load``: the persona simulator's 28 days) goes
through a real :class:`~streamseg.engine.Engine` on a real Valkey in consecutive
passes, each under new names one period after the last: every pass is a cohort
that goes silent when the next begins, as a shop's customers lapse. A re-scoring
sweep and the leader's re-fit run every simulated day, as in
``quality_bench.py``, and each pass's customers are scored at its end (adjusted
Rand index of their memberships against their planted personas). The first pass
has no lapsed cohort before it; what the later ones score shows whether the
growing base of lapsed customers pulls the segments away from the active ones
(``STREAMSEG_MODEL_ACTIVE_DAYS``, docs/model.md "Who the segments learn from").
With ``--compare`` every setting runs on the same pool, one after another.
Figures are printed and saved to ``load_tests/results/cohort_quality.{json,md}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `common`, also when a test loads this file

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from common import NO_BROKER, announce, run_script, valkey_only
from prometheus_client import CollectorRegistry
from quality_bench import read_states, refit

from streamseg.bench.load import Pool, Timeline, events, renamed
from streamseg.engine import Engine, InMessage, OutRecord, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.quality import adjusted_rand_index
from streamseg.rescore import sweep
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS

RESULTS = Path(__file__).parent / "results"


class Discard:
    """No broker: the memberships the engine publishes are read back from Redis."""

    async def publish(self, records: list[OutRecord]) -> None:
        return None


async def run(pool: Pool, redis_url: str, passes: int, active_days: float,
              batch: int = 500) -> list[dict[str, Any]]:
    """The pool's passes through one engine; per pass, its customers' ARI at its end."""
    k = len(set(pool.truth.values()))
    settings = Settings(redis_url=redis_url, key_prefix=f"cq{uuid.uuid4().hex[:8]}", n_segments=k,
                        seed=pool.seed, model_active_days=active_days)
    keys = Keys(settings.key_prefix)
    store = RedisFeatureStore.from_url(redis_url, keys, dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    engine = Engine(settings, store, build_segmenter(settings), Discard(), Metrics(CollectorRegistry()))
    stream = events(pool, timeline=Timeline.of(pool, settings.earliest_event_ms))
    next_day: float | None = None
    out = []
    t0 = time.monotonic()
    try:
        for p in range(passes):
            msgs: list[InMessage] = []
            for i in range(len(pool)):
                tx, cid, value = next(stream)
                msgs.append(InMessage(settings.topic("transactions" if tx else "clickstream"), 0, i,
                                      cid, value))
                if len(msgs) < batch and i < len(pool) - 1:
                    continue
                await engine.process(msgs)
                msgs = []
                now = engine.clock.clock_ms
                next_day = now + DAY_MS if next_day is None else next_day
                if now >= next_day:  # what the Faust leader's timers do, once per simulated day
                    await sweep(engine, older_than_days=settings.rescore_after_hours / 24.0,
                                batch=settings.rescore_batch)
                    await refit(engine)
                    next_day = now + DAY_MS
            cids = sorted(renamed(c, p) for c in pool.truth)
            states = await read_states(store, keys, cids)
            seg = {c: int(s["seg"]) for c, s in states.items() if isinstance(s.get("seg"), float)}
            ids = sorted(seg)
            ari = adjusted_rand_index([pool.truth[c.removeprefix(f"r{p}") if p else c] for c in ids],
                                      [seg[c] for c in ids])
            out.append({"pass": p, "ari": round(ari, 4), "assigned": len(ids), "customers": len(cids),
                        "seconds": round(time.monotonic() - t0, 1)})
            print(f"  model_active_days {active_days:g}, pass {p}: ARI {ari:.3f} "
                  f"({len(ids):,} of {len(cids):,} assigned) {out[-1]['seconds']:.0f}s", flush=True)
    finally:
        await store.close()
    return out


def markdown(result: dict[str, Any]) -> str:
    passes = len(next(iter(result["runs"].values())))
    lines = [f"Measured {result['measured_at']} with `{result['command']}` ({result['broker']}).", "",
             "| model_active_days | " + " | ".join(f"pass {p}" for p in range(passes)) + " |",
             "|---|" + "---:|" * passes]
    for days, rows in result["runs"].items():
        lines.append(f"| {days} | " + " | ".join(f"{r['ari']:.3f}" for r in rows) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model-active-days", type=float, default=Settings().model_active_days)
    ap.add_argument("--compare", default="", help="comma-separated model_active_days values, each a run "
                    "on the same pool (1e6: every silent customer learned, as before 2026-12-07)")
    args = ap.parse_args()
    announce(NO_BROKER)
    settings = [float(x) for x in args.compare.split(",")] if args.compare else [args.model_active_days]
    pool = Pool.simulate(args.customers, seed=args.seed)
    runs = {}
    with valkey_only() as stack:
        for days in settings:
            runs[f"{days:g}"] = asyncio.run(run(pool, stack.settings().redis_url, args.passes, days))
    result = {"broker": NO_BROKER, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": "python load_tests/cohort_quality.py " + " ".join(sys.argv[1:]),
              "customers": args.customers, "passes": args.passes, "seed": args.seed, "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cohort_quality.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "cohort_quality.md").write_text(markdown(result) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    run_script(main)
