"""Segment validation on the generator's default mix, for k below, at and above the six personas.

    python load_tests/segment_validation.py [--customers 2000] [--days 40]

The engine runs in-process on a real Valkey (no broker), segments the default
persona mix, then the leader refreshes its catalog twice (re-fit, profiles and
validation on the sample; the second refresh measures stability against the
re-fitted version). Prints and saves each segment's silhouette, sample share,
stability and flags (settings ``segment_min_share`` / ``segment_min_silhouette``
at their defaults) to load_tests/results/segment_validation.{json,md}: the
figures behind those defaults (docs/model.md: validation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from common import NO_BROKER, announce, run_script, stamped, valkey_only
from prometheus_client import CollectorRegistry

from streamseg.drift.evaluate import _Discard
from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.generate import assign_personas, simulate
from streamseg.metrics import Metrics
from streamseg.settings import Settings

OUT = Path(__file__).parent / "results"
END_MS = 1_767_225_600_000  # 2026-01-01
KS = (4, 6, 8, 10)


async def validate(redis_url: str, k: int, customers: int, days: float) -> list[dict[str, object]]:
    """Segment the default mix with ``k`` segments; the leader's validation after two refreshes."""
    s = Settings(redis_url=redis_url, key_prefix=f"v{uuid.uuid4().hex[:8]}", n_segments=k,
                 clock="event", model_sync_events=500)
    store = RedisFeatureStore.from_url(s.redis_url, Keys(s.key_prefix),
                                       dedup_horizon_days=s.dedup_horizon_days,
                                       retention_days=s.retention_days)
    engine = Engine(s, store, build_segmenter(s), _Discard(), Metrics(CollectorRegistry()))
    try:
        truth = assign_personas(customers, seed=5)
        batch: list[InMessage] = []
        for i, ev in enumerate(simulate(truth, days=days, end_ms=END_MS, seed=5)):
            batch.append(InMessage(s.topic(ev.topic_role), 0, i, ev.customer_id.encode(),
                                   orjson.dumps(ev.payload)))
            if len(batch) >= s.batch_max:
                await engine.process(batch)
                batch = []
        await engine.process(batch)
        for _ in range(2):
            await engine.leader.refresh_catalog()
        return [{"k": k, "segment": sid, "name": engine.assigner.name_of(sid),
                 **v.model_dump(exclude={"model_version", "previous_version"})}
                for sid, v in sorted(engine.leader.validation.items())]
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--days", type=float, default=40.0)
    args = ap.parse_args()
    announce(NO_BROKER)
    OUT.mkdir(exist_ok=True)
    rows = []
    with valkey_only() as st:
        for k in KS:
            rows += asyncio.run(validate(st.redis_url, k, args.customers, args.days))
    (OUT / "segment_validation.json").write_text(json.dumps(stamped({"rows": rows}, NO_BROKER), indent=1))
    md = [f"Segment validation, default persona mix (6 personas), {args.customers} customers, "
          f"{args.days:g} days; broker: {NO_BROKER}", "",
          "| k | segment | silhouette | model silhouette | share | stability | flags |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['k']} | {r['segment']} {r['name']} | {_f(r['silhouette'])} | "
           f"{_f(r['model_silhouette'])} | {_f(r['share'])} | {_f(r['stability'])} | "
           f"{', '.join(r['flags']) or '-'} |" for r in rows]  # type: ignore[arg-type]
    (OUT / "segment_validation.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _f(x: object) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    run_script(main)
