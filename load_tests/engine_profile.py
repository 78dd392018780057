"""Profile Engine.process alone (real Valkey, no Kafka): where does a batch's time go?

CPU time per event of this process and of Valkey (from /proc) is printed next
to the wall-clock rate, because on a shared machine the wall clock mostly
measures the neighbours. ``--profile`` sorts a cProfile by CPU time. No broker
is started (the saved result says so): the engine publishes into a counter.
The garbage collector is set as a worker sets it (the heap at start frozen,
:func:`streamseg.tuning.tune_gc`); ``--default-gc`` keeps Python's thresholds.

    python load_tests/engine_profile.py [--customers 2000] [--batch 500] [--envelope 0] [--profile]
                                        [--passes 1] [--simulated] [--value]

``--simulated`` times events as ``streamseg bench`` does (each customer's simulated spacing,
28 days of event time per pass, the bench's drift windows) instead of stamping them now;
``--value`` scores every update with a customer-value model, as a worker does once its
leader has fitted one (fixed parameters: no fit runs here).
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

from streamseg.bench.load import Pool, Timeline, envelopes, singles
from streamseg.bench.probe import cpu_seconds
from streamseg.bench.runner import SIMULATED_TIME
from streamseg.engine import Engine, InMessage, OutRecord, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.settings import Settings
from streamseg.tuning import tune_gc
from streamseg.value.params import ValueParams

RESULTS = Path(__file__).parent / "results"


class NullPublisher:
    def __init__(self) -> None:
        self.records = 0

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.records += len(records)


#: a fit of the bench's load (a worker's leader fits its own; any plausible one costs the same)
VALUE = ValueParams(r=0.9, alpha=12.0, a=0.8, b=2.5, p=3.0, q=2.0, v=100.0, version=1,
                    active_r=1.2, active_alpha=3.0, active_a=0.7, active_b=3.0)


def messages(settings: Settings, pool: Pool, envelope: int, passes: int = 1,
             simulated: bool = False) -> list[InMessage]:
    timeline = Timeline.of(pool, settings.earliest_event_ms) if simulated else None
    records = (envelopes(settings, pool, envelope, timeline=timeline) if envelope
               else singles(settings, pool, timeline=timeline))
    now = time.time()
    return [InMessage(topic, p, i, key, value, now)
            for i, (topic, p, key, value, _) in zip(range(passes * len(pool) // max(1, envelope)),
                                                    records, strict=False)]


async def run(settings: Settings, msgs: list[InMessage], batch: int,
              value: bool = False) -> tuple[int, float, float]:
    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    engine = Engine(settings, store, build_segmenter(settings), NullPublisher(),
                    Metrics(CollectorRegistry()))
    if value:
        engine.leader.value.adopt(VALUE)
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
    ap.add_argument("--passes", type=int, default=1, help="passes over the customers")
    ap.add_argument("--simulated", action="store_true", help="event times as streamseg bench")
    ap.add_argument("--value", action="store_true", help="score with a customer-value model")
    args = ap.parse_args()
    announce(NO_BROKER)
    with valkey_only() as st:
        settings = Settings(redis_url=st.redis_url,
                            **(SIMULATED_TIME if args.simulated else {}))  # type: ignore[arg-type]
        msgs = messages(settings, Pool.simulate(args.customers), args.envelope, args.passes,
                        args.simulated)
        valkey = st.process("valkey").proc.pid  # type: ignore[union-attr]
        gc.collect()
        gc.freeze()  # as the worker does once it runs
        if not args.default_gc:
            tune_gc()
        valkey_cpu = cpu_seconds(valkey)
        prof = cProfile.Profile(time.process_time) if args.profile else None
        if prof:
            prof.enable()
        events, cpu, wall = asyncio.run(run(settings, msgs, args.batch, args.value))
        if prof:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        valkey_cpu = cpu_seconds(valkey) - valkey_cpu
        commands = commandstats(settings.redis_url, events)
    result = stamped({"events": events, "batch_messages": args.batch, "envelope": args.envelope,
              "events_per_s": round(events / wall), "engine_cpu_us_per_event": round(cpu / events * 1e6, 1),
              "valkey_cpu_us_per_event": round(valkey_cpu / events * 1e6, 1), "profiled": args.profile,
              "gc": "default" if args.default_gc else "worker", "passes": args.passes,
              "event_time": "simulated" if args.simulated else "now", "value_model": args.value,
              "valkey_commands_per_event": commands},
                     NO_BROKER)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_script(main)
