"""Resident memory of the leader's sample process over repeated refreshes: does it level off?

The leader's catalog refresh reads up to ``--sample`` customers into a child
process (``streamseg.segmenting.offload``), re-fits and builds profiles there,
then releases the sample. This stores ``--customers`` customer states in a
fresh Valkey (the states of 200 simulated customers, segmented by a real
in-process engine, copied under new ids), then runs ``--rounds`` refreshes'
worth of sample -> fit -> profiles -> validation -> release through one sample
process, printing its RSS while it holds each sample, after the validation
(whose silhouette imports ``sklearn.metrics`` at the first round) and after
each release. No broker
is started (the saved results say so).

    python load_tests/sample_memory.py --customers 20000 --rounds 16

Prints and saves load_tests/results/sample_memory.json and sample_memory.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis
from common import NO_BROKER, announce, run_script, stamped, valkey_only
from prometheus_client import CollectorRegistry

from streamseg.bench.probe import rss_mb
from streamseg.engine import Engine, InMessage, OutRecord, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.generate import assign_personas, simulate
from streamseg.metrics import Metrics
from streamseg.segmenting.offload import SampleProcess
from streamseg.settings import Settings

RESULTS = Path(__file__).parent / "results"
T0 = 1_767_225_600_000  # 2026-01-01: the simulated customers' clock


class _Discard:
    async def publish(self, records: Sequence[OutRecord]) -> None:
        return None


async def seed(settings: Settings, customers: int) -> Engine:
    """A segmented engine, and ``customers`` stored states (200 real ones, copied)."""
    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    engine = Engine(settings, store, build_segmenter(settings), _Discard(), Metrics(CollectorRegistry()))
    truth = assign_personas(200, seed=5)
    events = [InMessage(settings.topic(ev.topic_role), 0, i, ev.customer_id.encode(),
                        orjson.dumps(ev.payload))
              for i, ev in enumerate(simulate(truth, days=40, end_ms=T0, seed=5))]
    for i in range(0, len(events), 500):
        await engine.process(events[i : i + 500])
    keys = Keys(settings.key_prefix)
    r = redis.Redis.from_url(settings.redis_url)
    originals: list[dict[Any, Any]] = [r.hgetall(k) for k in r.scan_iter(keys.customer_pattern())]
    pipe = r.pipeline(transaction=False)
    for i in range(customers - len(originals)):
        pipe.hset(keys.state(f"copy-{i}"), mapping=originals[i % len(originals)])
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    r.close()
    return engine


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    with valkey_only() as st:
        settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url=st.redis_url, key_prefix="mem",
                            n_segments=4, model_warmup=100, model_sync_events=50, clock="event")
        engine = await seed(settings, args.customers)
        assert engine.assigner.model is not None
        sampler = SampleProcess(settings.redis_url, settings.key_prefix,
                                malloc_trim=not args.no_trim)
        try:
            for i in range(args.rounds):
                sample = await sampler.sample(args.sample, T0, 0)
                pid = sampler.pid()
                assert pid is not None
                held = rss_mb(pid)
                await sample.fit(engine.assigner.model, i)
                model = engine.assigner.model
                await sample.profiles(model.names, {0: len(sample)}, model.version)
                await sample.validate(model, None, i)  # silhouette: imports sklearn.metrics once
                validated = rss_mb(pid)
                await sample.release()
                row = {"round": i + 1, "sample": len(sample), "rss_mb_held": round(held, 1),
                       "rss_mb_validated": round(validated, 1),
                       "rss_mb_released": round(rss_mb(pid), 1)}
                print(json.dumps(row), flush=True)
                rounds.append(row)
        finally:
            sampler.close()
    return rounds


def markdown(rounds: list[dict[str, Any]], command: str, broker: str = NO_BROKER) -> str:
    rows = ["| round | customers sampled | RSS holding the sample MiB | after validation MiB "
            "| RSS after release MiB |", "|---:|---:|---:|---:|---:|"]
    rows += [f"| {r['round']} | {r['sample']:,} | {r['rss_mb_held']} | {r['rss_mb_validated']} "
             f"| {r['rss_mb_released']} |" for r in rounds]
    held = [r["rss_mb_held"] for r in rounds]
    half = held[len(held) // 2:]
    return (f"# Sample process memory\n\n`{command}`; broker: {broker}\n\n" + "\n".join(rows)
            + f"\n\nHolding a sample: {held[0]} MiB in round 1, {max(half)} MiB at most over the "
            f"second half of the rounds ({max(half) / held[0] - 1:+.1%}).\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=20_000, help="customer states stored")
    ap.add_argument("--sample", type=int, default=20_000, help="customers per refresh sample")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--no-trim", action="store_true",
                    help="the sample process keeps freed heap (STREAMSEG_SAMPLE_MALLOC_TRIM=false)")
    args = ap.parse_args()
    announce(NO_BROKER)
    rounds = asyncio.run(run(args))
    command = " ".join(["python", "load_tests/sample_memory.py", *sys.argv[1:]])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sample_memory.json").write_text(
        json.dumps(stamped({"command": command, "rounds": rounds}, NO_BROKER), indent=2) + "\n")
    md = markdown(rounds, command)
    (RESULTS / "sample_memory.md").write_text(md)
    print(md)


if __name__ == "__main__":  # the sample process is spawned: it re-imports this module
    run_script(main)
