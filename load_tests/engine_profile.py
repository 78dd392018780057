"""Profile Engine.process alone (real Valkey, no Kafka): where does a batch's time go?

CPU time per event of this process and of Valkey (from /proc) is printed next
to the wall-clock rate, because on a shared machine the wall clock mostly
measures the neighbours. ``--profile`` sorts a cProfile by CPU time. No broker
is started (the saved result says so): the engine publishes into a counter.
The garbage collector is set as a worker sets it (the heap at start frozen,
:func:`streamseg.tuning.tune_gc`); ``--default-gc`` keeps Python's thresholds.

    python load_tests/engine_profile.py [--customers 2000] [--batch 500] [--envelope 0] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from common import NO_BROKER, announce, run_script, stamped, valkey_only
from prometheus_client import CollectorRegistry

from streamseg.bench.load import Pool, envelopes, singles
from streamseg.bench.probe import cpu_seconds
from streamseg.engine import Engine, InMessage, OutRecord, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.settings import Settings
from streamseg.tuning import tune_gc

RESULTS = Path(__file__).parent / "results"


class NullPublisher:
    def __init__(self) -> None:
        self.records = 0

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.records += len(records)


def messages(settings: Settings, pool: Pool, envelope: int) -> list[InMessage]:
    records = envelopes(settings, pool, envelope) if envelope else singles(settings, pool)
    now = time.time()
    return [InMessage(topic, p, i, key, value, now)
            for i, (topic, p, key, value, _) in zip(range(len(pool) // max(1, envelope)), records,
                                                    strict=False)]


async def run(settings: Settings, msgs: list[InMessage], batch: int) -> tuple[int, float, float]:
    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    engine = Engine(settings, store, build_segmenter(settings), NullPublisher(),
                    Metrics(CollectorRegistry()))
    events = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(msgs), batch):
        r = await engine.process(msgs[i : i + batch])
        events += r.processed + r.duplicates + r.late + r.dead_letters
    await store.close()
    return events, time.process_time() - cpu, time.perf_counter() - wall


def commandstats(url: str, events: int) -> dict[str, dict[str, float]]:
    """Valkey's INFO commandstats per event: calls and us of CPU by command (the script's
    own calls included), the costliest first."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    per = {name.removeprefix("cmdstat_"): {"calls": round(s["calls"] / events, 2),
                                           "us": round(s["usec"] / events, 2)}
           for name, s in stats.items()}
    return dict(sorted(per.items(), key=lambda kv: -kv[1]["us"])[:8])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500, help="messages per batch")
    ap.add_argument("--envelope", type=int, default=0, help="events per message (0: one)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--default-gc", action="store_true", help="Python's collector thresholds")
    args = ap.parse_args()
    announce(NO_BROKER)
    with valkey_only() as st:
        settings = Settings(redis_url=st.redis_url)
        msgs = messages(settings, Pool.simulate(args.customers), args.envelope)
        valkey = st.process("valkey").proc.pid  # type: ignore[union-attr]
        gc.collect()
        gc.freeze()  # as the worker does once it runs
        if not args.default_gc:
            tune_gc()
        valkey_cpu = cpu_seconds(valkey)
        prof = cProfile.Profile(time.process_time) if args.profile else None
        if prof:
            prof.enable()
        events, cpu, wall = asyncio.run(run(settings, msgs, args.batch))
        if prof:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        valkey_cpu = cpu_seconds(valkey) - valkey_cpu
        commands = commandstats(settings.redis_url, events)
    result = stamped({"events": events, "batch_messages": args.batch, "envelope": args.envelope,
              "events_per_s": round(events / wall), "engine_cpu_us_per_event": round(cpu / events * 1e6, 1),
              "valkey_cpu_us_per_event": round(valkey_cpu / events * 1e6, 1), "profiled": args.profile,
              "gc": "default" if args.default_gc else "worker",
              "valkey_commands_per_event": commands},
                     NO_BROKER)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_script(main)
