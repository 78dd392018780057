"""The engine's end-to-end latency window by window, at one fixed rate: *when* does it rise?

``streamseg bench`` gives one set of percentiles per 20-second phase; this runs
the bench's engine subject (fresh broker and Valkey, same producer,
same warm-up) at one rate and prints p50/p95/p99 for every window, so spikes
line up with what happens at that time (the leader's catalog refresh every
``STREAMSEG_CATALOG_REFRESH_S`` = 30 s, drift windows every minute, the
broker's own drift over time). Each window also gives the CPU (% of one core)
of the worker, its child processes, Valkey and the broker.

The broker is Apache Kafka unless ``--broker tansu`` asks for Tansu.

    python load_tests/latency_windows.py [--broker kafka|tansu] --rate 6000 --seconds 90 [--window 5]

Prints the windows and saves ``load_tests/results/latency_windows.json``, which names the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from common import add_broker_argument, announce, run_script, stamped

from streamseg.bench.load import Pool, paced
from streamseg.bench.probe import CpuMeter
from streamseg.bench.runner import Plan, joined, launch, percentiles, subjects, warm_up
from streamseg.devstack import DevStack

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_broker_argument(ap)
    ap.add_argument("--rate", type=float, default=6000.0, help="events/s (single-event messages)")
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--window", type=float, default=5.0, help="seconds per reported window")
    args = ap.parse_args()
    broker_name = announce(args.broker)
    plan = Plan.make(False, args.seconds)
    windows: list[dict[str, Any]] = []
    with DevStack(broker=args.broker) as stack:
        base = stack.settings()
        pool = Pool.simulate(plan.customers)
        gc.collect()
        gc.freeze()  # the producer's pool stays out of its collector, as in the bench
        run = launch(stack, base, pool, subjects(100)[0], plan)
        joined([run])
        warm_up(run, plan.warmup_events)
        last = [run.scrape()]
        t0 = time.monotonic()
        servers = {"valkey": stack.process("valkey").proc.pid,  # type: ignore[union-attr]
                   "broker": stack.process("broker").proc.pid,  # type: ignore[union-attr]
                   "producer": os.getpid()}  # this process: the paced producer and the scrapes
        meter = [CpuMeter(run.pid, servers)]

        def tick() -> None:
            now = run.scrape()
            spent = now.at - last[0].at
            # % of one core per process over the window: who held the CPU when latency rose
            cpu = {k: round(v * 100 / spent, 1) for k, v in meter[0].seconds().items()}
            w = {"t_s": round(now.at - t0, 1), "events": round(now.events - last[0].events),
                 **percentiles(now.minus(last[0])), "cpu_percent": cpu}
            windows.append(w)
            print(json.dumps(w), flush=True)
            last[0] = now
            meter[0] = CpuMeter(run.pid, servers)

        sent = asyncio.run(paced(run.settings, run.records, args.rate, args.seconds, tick=run.tick,
                                 every=args.window, on_tick=tick))
        time.sleep(args.window)
        tick()  # what was still in flight when the producer stopped
        run.proc.stop()
    RESULTS.mkdir(exist_ok=True)
    out = stamped({"command": f"python load_tests/latency_windows.py --broker {args.broker} "
                              f"--rate {args.rate:g} --seconds {args.seconds:g} --window {args.window:g}",
                   "sent_events": sent.events, "windows": windows}, args.broker)
    path = RESULTS / "latency_windows.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    worst = max((w["p99_ms"] for w in windows if math.isfinite(w["p99_ms"])), default=None)
    print(f"{broker_name}: {sent.events:,} events sent in {len(windows)} windows, worst window p99 "
          f"{worst} ms; saved {path}")


if __name__ == "__main__":
    run_script(main)
