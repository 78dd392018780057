"""Is the embedded broker's fetch cost per partition, or for everything it stores? (no streamseg code)

Two fresh Tansu brokers. Into each, ``--batches`` single-message sends
(eight awaited in parallel, so mostly one record batch each) go first into a
partition: the one later consumed (``same``), or another topic's (``other``).
Then a trickle of 20 sends a second goes into the consumed partition for 10 s
while a bare aiokafka consumer (10 ms fetch wait, as the worker's) reads it,
and the broker's CPU over the trickle is printed: if only the fetched
partition's batches cost, ``other`` stays at the empty broker's cost.

    python load_tests/broker_partition_cost.py [--batches 40000]

Prints and saves load_tests/results/broker_partition_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamseg.bench.probe import cpu_seconds
from streamseg.devstack import DevStack

RESULTS = Path(__file__).parent / "results"


async def trial(fill: str, batches: int) -> dict[str, float | int | str]:
    with DevStack() as st:  # a fresh broker (and a Valkey this does not use)
        broker = st.process("broker")
        assert broker.proc is not None
        admin = AIOKafkaAdminClient(bootstrap_servers=st.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("live", 1, 1), NewTopic("other", 1, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=st.bootstrap, linger_ms=0)
        await producer.start()
        topic = "live" if fill == "same" else "other"

        async def sender() -> None:
            for _ in range(batches // 8):
                await (await producer.send(topic, b"x" * 200, partition=0))

        t0 = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(8)))
        fill_s = time.monotonic() - t0
        consumer = AIOKafkaConsumer("live", bootstrap_servers=st.bootstrap, group_id=None,
                                    fetch_max_wait_ms=10, auto_offset_reset="latest")
        await consumer.start()
        got = 0

        async def consume() -> None:
            nonlocal got
            while True:
                records = await consumer.getmany(timeout_ms=100)
                got += sum(len(v) for v in records.values())

        reader = asyncio.create_task(consume())
        await asyncio.sleep(2)
        cpu0, t0 = cpu_seconds(broker.proc.pid), time.monotonic()
        for _ in range(200):
            await (await producer.send("live", b"y" * 200, partition=0))
            await asyncio.sleep(0.05)
        spent = time.monotonic() - t0
        cpu = (cpu_seconds(broker.proc.pid) - cpu0) * 100 / spent
        await asyncio.sleep(0.5)
        reader.cancel()
        await consumer.stop()
        await producer.stop()
    row: dict[str, float | int | str] = {"earlier_sends_into": fill, "sends": batches,
                                         "fill_seconds": round(fill_s, 1),
                                         "broker_cpu_percent_during_trickle": round(cpu, 1),
                                         "trickle_records_consumed": got}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40_000, help="earlier sends before the trickle")
    args = ap.parse_args()
    rows = [asyncio.run(trial(fill, args.batches)) for fill in ("other", "same")]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "broker_partition_cost.json").write_text(json.dumps(
        {"command": f"python load_tests/broker_partition_cost.py --batches {args.batches}",
         "trials": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
