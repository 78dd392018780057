"""Profile Engine.process alone (real Valkey, no Kafka): where does a batch's time go?

    python load_tests/engine_profile.py [--customers 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

import orjson
from prometheus_client import CollectorRegistry

from streamseg.devstack import DevStack
from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.generate import assign_personas
from streamseg.generate.personas import simulate
from streamseg.metrics import Metrics
from streamseg.settings import Settings


class NullPublisher:
    def __init__(self) -> None:
        self.records = 0

    async def publish(self, records) -> None:  # type: ignore[no-untyped-def]
        self.records += len(records)


def messages(settings: Settings, customers: int) -> list[InMessage]:
    truth = assign_personas(customers, seed=7)
    out = []
    for i, ev in enumerate(simulate(truth, days=120, end_ms=int(time.time() * 1000), seed=7)):
        out.append(InMessage(settings.topic(ev.topic_role), 0, i, ev.customer_id.encode(),
                             orjson.dumps(ev.payload), time.time()))
    return out


async def run(settings: Settings, msgs: list[InMessage], batch: int) -> float:
    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    engine = Engine(settings, store, build_segmenter(settings), NullPublisher(),
                    Metrics(CollectorRegistry()))
    t = time.perf_counter()
    for i in range(0, len(msgs), batch):
        await engine.process(msgs[i : i + batch])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with DevStack() as st:
        settings = Settings(kafka_bootstrap=st.bootstrap, redis_url=st.redis_url)
        msgs = messages(settings, args.customers)
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        secs = asyncio.run(run(settings, msgs, args.batch))
        if prof:
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
        print(f"{len(msgs)} events in {secs:.1f}s = {len(msgs) / secs:,.0f} events/s")


if __name__ == "__main__":
    main()
