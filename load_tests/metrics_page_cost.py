"""What one read of ``/metrics`` costs a worker: the whole page against the bench's filtered read.

A real ``streamseg worker`` (the bench's engine subject, Apache Kafka unless
``--broker tansu``, Valkey) is warmed up and sent the settling rounds the bench
sends, so its drift, migration and forecast series exist; then it is read
``--reads`` times each way, alternating in blocks, and the worker's CPU time
(``/proc``) per read is compared. The worker is otherwise idle, so the CPU it
uses over a block is the reads'.

    python load_tests/metrics_page_cost.py [--reads 200] [--blocks 4]
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from statistics import median
from typing import Any

from common import add_broker_argument, announce, run_script, stamped

from streamseg.bench.load import Pool
from streamseg.bench.probe import READ_QUERY, cpu_seconds
from streamseg.bench.runner import Plan, joined, launch, settle_rounds, settled, subjects, warm_up
from streamseg.devstack import DevStack


def read(port: int, query: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=10) as r:
        return len(r.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_broker_argument(ap)
    ap.add_argument("--reads", type=int, default=200, help="reads per block")
    ap.add_argument("--blocks", type=int, default=4, help="alternating blocks of each kind")
    args = ap.parse_args()
    announce(args.broker)
    plan = Plan.make(False, None)
    with DevStack(broker=args.broker) as stack:
        base = stack.settings()
        pool = Pool.simulate(2000)
        run = launch(stack, base, pool, subjects(100)[0], plan)
        joined([run])
        warm_up(run, 20_000)
        settled(run, settle_rounds(run.settings, plan.timeline(pool, base)))
        time.sleep(5)  # the last batch's drift windows and the leader's refresh
        port, kinds = run.settings.web_port, {"whole page": "", "bench's read": "?" + READ_QUERY}
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        size: dict[str, int] = {}
        for _ in range(args.blocks):
            for kind, query in kinds.items():
                c0 = cpu_seconds(run.pid)
                for _ in range(args.reads):
                    size[kind] = read(port, query)
                cpu[kind].append((cpu_seconds(run.pid) - c0) / args.reads * 1000)
        run.proc.stop()
    out: dict[str, Any] = {"command": f"python load_tests/metrics_page_cost.py --broker {args.broker} "
                                      f"--reads {args.reads} --blocks {args.blocks}",
                           "worker_cpu_ms_per_read": {k: round(median(v), 3) for k, v in cpu.items()},
                           "blocks_ms": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
                           "bytes": size}
    print(json.dumps(stamped(out, args.broker), indent=1))


if __name__ == "__main__":
    run_script(main)
