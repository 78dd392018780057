"""Maximum throughput of one worker: pre-load the topics, then time the drain.

Real parts only: a broker (Apache Kafka; Tansu with ``--broker tansu``), Valkey,
`streamseg generate` (unpaced) and a `streamseg worker` process. The worker
starts after all events are in the broker, so the figure is the engine's own
ceiling, not the generator's rate. Prints and saves JSON, which names the
broker, to load_tests/results/drain.json.

    python load_tests/drain_bench.py [--broker kafka|tansu] [--redis-cluster] [--workers 2] --customers 1000

``--workers 2`` starts two worker processes in one consumer group (the topics'
partitions split between them) and sums what both processed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import add_broker_argument, announce, run_script, stamped
from prometheus_client.parser import text_string_to_metric_families

from streamseg.devstack import DevStack, ManagedProcess, free_port
from streamseg.devstack.processes import wait_for_port

RESULTS = Path(__file__).parent / "results"


def processed(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "streamseg_events_total")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_broker_argument(ap)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--days", type=float, default=120.0)
    ap.add_argument("--redis-cluster", action="store_true",
                    help="a 3-master + 3-replica Valkey cluster (the worker waits for a replica); "
                    "saves drain_cluster.json")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes in one consumer group (saves drain_<n>workers*.json)")
    args = ap.parse_args()
    announce(args.broker)
    with DevStack(broker=args.broker, redis_cluster=args.redis_cluster) as st:
        ports = [free_port() for _ in range(args.workers)]
        env = {**os.environ, **st.client_env, "STREAMSEG_LOG_LEVEL": "warn"}
        gen = subprocess.run([sys.executable, "-m", "streamseg", "generate", "--customers",
                              str(args.customers), "--days", str(args.days)],
                             env=env, capture_output=True, text=True, check=True)
        stats = json.loads(gen.stdout.strip().splitlines()[-1])
        total = stats["events_produced"]
        workers = []
        for i, port in enumerate(ports):
            worker = ManagedProcess(f"worker-{i}", [sys.executable, "-m", "streamseg", "worker"],
                                    st.dir / f"worker-{i}.log",
                                    {**env, "STREAMSEG_WEB_PORT": str(port)}).start()
            st.processes.append(worker)
            workers.append(worker)
        for port, worker in zip(ports, workers, strict=True):
            wait_for_port(port, 60, worker.proc)
        t0 = first = None
        while True:
            n = sum(processed(port) for port in ports)
            now = time.monotonic()
            if n > 0 and t0 is None:
                t0, first = now, n
            if n >= total:
                break
            time.sleep(0.25)
        secs = now - t0 if t0 else float("nan")
        result = stamped({
            "events": total, "customers": args.customers,
            "seconds": round(secs, 2), "events_per_second": round((total - (first or 0)) / secs),
            "workers": args.workers,
            "worker_rss_mb": [round(rss_mb(w.proc.pid), 1) for w in workers],  # type: ignore[union-attr]
            "generator_events_per_second": stats["events_per_second"],
            "redis": "3+3 Valkey cluster, WAIT 1" if args.redis_cluster else "one Valkey node",
        }, args.broker)
    RESULTS.mkdir(exist_ok=True)
    name = ("drain" + (f"_{args.workers}workers" if args.workers > 1 else "")
            + ("_cluster" if args.redis_cluster else "") + ".json")
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_script(main)
