"""End-to-end latency of the broker alone: the bench's paced producer -> a bare aiokafka
consumer, no streamseg code in between. The floor under every subject of ``streamseg
bench`` (same producer, same ticks, same topics and partitions), on the broker
chosen with ``--broker`` (Apache Kafka by default, as the bench; Tansu when asked for).

Latency is Kafka record timestamp (set at send) -> the consumer holding the record,
per window, so a drift over time shows. Written to show Tansu's: its in-memory storage
slows with the number of record batches in a partition (see ``broker_batches.py``);
run with each ``--broker``, it shows whether the chosen broker drifts.

    python load_tests/broker_floor.py [--broker kafka|tansu] --rate 6200 --seconds 300

Prints and saves load_tests/results/broker_floor.json and broker_floor.md, which name the
broker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

CONSUMER = r'''
import asyncio, json, sys, time
from aiokafka import AIOKafkaConsumer

async def main(bootstrap, window, topics):
    c = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                         auto_offset_reset="latest", fetch_max_wait_ms=10,
                         max_partition_fetch_bytes=4 << 20)
    await c.start()
    print("ready", flush=True)
    lat, t0 = [], time.time()
    while True:
        batch = await c.getmany(timeout_ms=100, max_records=5000)
        now = time.time() * 1000
        for msgs in batch.values():
            lat.extend(now - m.timestamp for m in msgs)
        if time.time() - t0 >= window and lat:
            lat.sort()
            n = len(lat)
            print(json.dumps({"records": n, "p50_ms": round(lat[n // 2], 2),
                              "p95_ms": round(lat[int(n * .95)], 2),
                              "p99_ms": round(lat[int(n * .99)], 2),
                              "max_ms": round(lat[-1], 2)}), flush=True)
            lat, t0 = [], time.time()

asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
'''


def main() -> None:
    from common import add_broker_argument, announce, stamped

    from streamseg.bench.load import Pool, paced, singles, tick_for
    from streamseg.devstack import DevStack
    from streamseg.topics import ensure_topics

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_broker_argument(ap)
    ap.add_argument("--rate", type=float, default=6200.0, help="events/s (the bench's soak rate)")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--window", type=float, default=30.0)
    args = ap.parse_args()
    broker_name = announce(args.broker)
    st = DevStack(broker=args.broker)  # the broker alone: no Valkey
    try:
        st.start_broker()
        s = st.settings(redis_url="redis://127.0.0.1:1/0", topic_partitions=4)
        asyncio.run(ensure_topics(s))
        pool = Pool.simulate(4000)
        gc.collect()
        gc.freeze()  # as the bench does: the producer's own GC pauses must not count
        consumer = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, st.bootstrap, str(args.window),
             s.topic_clickstream, s.topic_transactions], stdout=subprocess.PIPE, text=True)
        try:
            assert consumer.stdout is not None
            assert consumer.stdout.readline().strip() == "ready"
            time.sleep(2)
            t0 = time.monotonic()
            sent = asyncio.run(paced(s, singles(s, pool), args.rate, args.seconds,
                                     tick=tick_for(st.broker)))
            time.sleep(args.window + 2)
        finally:
            consumer.terminate()
        out = consumer.stdout.read() if consumer.stdout else ""
    finally:
        st.stop()
    windows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for i, w in enumerate(windows):
        w["t_s"] = round((i + 1) * args.window, 1)
    result = stamped({"rate": args.rate, "seconds": args.seconds, "window": args.window,
                      "sent_events": sent.events, "elapsed_s": round(time.monotonic() - t0, 1),
                      "windows": windows}, args.broker)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "broker_floor.json").write_text(json.dumps(result, indent=1))
    rows = ["| t (s) | records | p50 ms | p95 ms | p99 ms | max ms |", "|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {w['t_s']} | {w['records']} | {w['p50_ms']} | {w['p95_ms']} | {w['p99_ms']} | "
             f"{w['max_ms']} |" for w in windows]
    md = (f"# Broker floor: {broker_name}\n\n`python load_tests/broker_floor.py --broker {args.broker} "
          f"--rate {args.rate:g} --seconds {args.seconds:g} --window {args.window:g}`: paced "
          f"producer -> bare aiokafka consumer on {broker_name}, no streamseg code.\n\n"
          + "\n".join(rows) + "\n")
    (RESULTS / "broker_floor.md").write_text(md)
    print(md)


if __name__ == "__main__":
    from common import run_script

    run_script(main)
