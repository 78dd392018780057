"""Is the broker's fetch cost per partition, or for everything it stores? (no streamseg code)

Two fresh brokers of one kind (``--broker``: Apache Kafka by default, Tansu
when asked for). Into each, ``--batches`` single-message sends (eight awaited
in parallel, so mostly one record batch each) go first into a partition: the
one later consumed (``same``), or another topic's (``other``). Then a trickle
of 20 sends a second goes into the consumed partition for 10 s while a bare
aiokafka consumer (10 ms fetch wait, as the worker's) reads it, and the
broker's CPU over the trickle is printed: if only the fetched partition's
batches cost, ``other`` stays at the empty broker's cost. Written to find
where Tansu's cost grows with the batches it holds; run with each
``--broker``, it shows whether the chosen broker has that cost at all.

    python load_tests/broker_partition_cost.py [--broker kafka|tansu] [--batches 40000]

Prints and saves load_tests/results/broker_partition_cost.json, which names the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import add_broker_argument, announce, run_script, stamped

from streamseg.bench.probe import cpu_seconds
from streamseg.devstack import DevStack

RESULTS = Path(__file__).parent / "results"


async def trial(fill: str, batches: int, kind: str) -> dict[str, float | int | str]:
    with DevStack(broker=kind) as st:  # a fresh broker (and a Valkey this does not use)
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
    add_broker_argument(ap)
    ap.add_argument("--batches", type=int, default=40_000, help="earlier sends before the trickle")
    args = ap.parse_args()
    broker_name = announce(args.broker)
    rows = [asyncio.run(trial(fill, args.batches, args.broker)) for fill in ("other", "same")]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "broker_partition_cost.json"
    path.write_text(json.dumps(stamped(
        {"command": f"python load_tests/broker_partition_cost.py --broker {args.broker} "
                    f"--batches {args.batches}", "trials": rows}, args.broker), indent=2) + "\n")
    cpu = {r["earlier_sends_into"]: r["broker_cpu_percent_during_trickle"] for r in rows}
    print(f"{broker_name}: broker CPU during the trickle {cpu['other']}% after {args.batches:,} sends "
          f"into another topic, {cpu['same']}% after as many into the consumed partition; "
          f"saved {path}")


if __name__ == "__main__":
    run_script(main)
