"""How the broker's fetch rate depends on record-batch size (no streamseg code).

    python load_tests/broker_batches.py [--broker kafka|tansu] [--messages 100000] [--read 50000]

Produces the same messages into one partition of a fresh broker (``--broker``:
Apache Kafka by default, Tansu when asked for) twice: once in large record
batches, once in batches of 5 (what a producer sending a few messages every
few milliseconds makes), then reads ``--read`` of each back with a bare
aiokafka consumer from the start, the middle and the end. Written to show
that Tansu's in-memory storage slows with the number of batches in a
partition (why ``streamseg bench`` paces its sends in 50 ms ticks, see
``streamseg/bench/load.py``); run on each broker, it compares them. Prints
and saves ``load_tests/results/broker_batches.json``, which names the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import add_broker_argument, announce, run_script, stamped

from streamseg.devstack import DevStack

RESULTS = Path(__file__).parent / "results"


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


async def read_rate(bootstrap: str, topic: str, start: int, read: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=10)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, start)
    got, t0 = 0, time.monotonic()
    try:
        while got < read:
            records = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            got += sum(len(v) for v in records.values())
    finally:
        await consumer.stop()
    return got / (time.monotonic() - t0)


async def run(bootstrap: str, n: int, read: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    cases = (("large batches", 5000), ("batches of 5", 5))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()  # one partition each, made before the clock starts (not auto-created)
    await admin.create_topics([NewTopic(f"batches-{per_batch}", 1, 1) for _, per_batch in cases])
    await admin.close()
    for name, per_batch in cases:
        topic = f"batches-{per_batch}"
        seconds = await produce(bootstrap, topic, n, per_batch)
        rates = {f"from offset {start}": round(await read_rate(bootstrap, topic, start, read))
                 for start in (0, n // 2, max(0, n - read))}
        out[name] = {"produce_s": round(seconds, 1), **rates}
        print(f"{name}: produced {n:,} in {seconds:.1f}s; read msgs/s "
              + ", ".join(f"{k}: {v:,}" for k, v in rates.items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_broker_argument(ap)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--read", type=int, default=50_000,
                    help="messages read back from each start (at most half of --messages)")
    a = ap.parse_args()
    if not 0 < a.read <= a.messages // 2:
        ap.error("--read must be between 1 and half of --messages")
    broker_name = announce(a.broker)
    with DevStack(broker=a.broker) as stack:
        figures = asyncio.run(run(stack.bootstrap, a.messages, a.read))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "broker_batches.json"
    path.write_text(json.dumps(stamped({"messages": a.messages, "read": a.read, "figures": figures},
                                       a.broker), indent=2) + "\n")
    print(f"saved {path} (broker: {broker_name})")


if __name__ == "__main__":
    run_script(main)
