"""How the embedded broker's fetch rate depends on record-batch size (no streamseg code).

    python load_tests/broker_batches.py [--messages 100000]

Produces the same messages into one partition of a fresh Tansu broker twice:
once in large record batches, once in batches of 5 (what a producer sending a
few messages every few milliseconds makes), then reads 50,000 of each back
with a bare aiokafka consumer from the start, the middle and the end. Tansu's
in-memory storage slows with the number of batches in a partition, which is
why ``streamseg bench`` paces its sends in 50 ms ticks (see
``streamseg/bench/load.py``). Prints and saves ``load_tests/results/broker_batches.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamseg.devstack import DevStack

RESULTS = Path(__file__).parent / "results"
READ = 50_000


async def produce(bootstrap: str, topic: str, n: int, per_batch: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0 if per_batch < 100 else 5,
                                max_batch_size=512 * 1024)
    await producer.start()
    t0 = time.monotonic()
    try:
        pending = []
        for _ in range(n):
            pending.append(await producer.send(topic, b"x" * 300, partition=0))
            if len(pending) >= per_batch:  # wait for the batch: the next one is a new batch
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - t0


async def read_rate(bootstrap: str, topic: str, start: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=10)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, start)
    got, t0 = 0, time.monotonic()
    try:
        while got < READ:
            records = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            got += sum(len(v) for v in records.values())
    finally:
        await consumer.stop()
    return got / (time.monotonic() - t0)


async def run(bootstrap: str, n: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, per_batch in (("large batches", 5000), ("batches of 5", 5)):
        topic = f"batches-{per_batch}"
        seconds = await produce(bootstrap, topic, n, per_batch)
        rates = {f"from offset {start}": round(await read_rate(bootstrap, topic, start))
                 for start in (0, n // 2, max(0, n - READ))}
        out[name] = {"produce_s": round(seconds, 1), **rates}
        print(f"{name}: produced {n:,} in {seconds:.1f}s; read msgs/s "
              + ", ".join(f"{k}: {v:,}" for k, v in rates.items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    a = ap.parse_args()
    with DevStack() as stack:
        figures = asyncio.run(run(stack.bootstrap, a.messages))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "broker_batches.json"
    path.write_text(json.dumps({"messages": a.messages, "read": READ, "figures": figures}, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
