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

``--settle`` first sends the whole rounds the bench sends an engine subject
before measuring it (a settled mix of active and lapsed customers, so the
re-scoring sweep and the re-fits have the bench's work to do). ``--py-spy
FILE.json`` records the worker with py-spy (Chrome trace format, idle samples
included) over the paced phase and gives each window the functions its main
thread was busy in, inclusive seconds: what the worker did in a bad window.

Prints the windows and saves ``load_tests/results/latency_windows.json``, which names the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from common import add_broker_argument, announce, run_script, stamped

from streamseg.bench.load import Pool, paced
from streamseg.bench.probe import CpuMeter
from streamseg.bench.runner import (
    Plan,
    joined,
    launch,
    percentiles,
    settle_rounds,
    settled,
    subjects,
    warm_up,
)
from streamseg.devstack import DevStack

RESULTS = Path(__file__).parent / "results"
#: Frames every busy sample of a worker's main thread passes through: not what it did
GENERIC = {"<module>", "_run_module_as_main", "_run_code", "main", "run_worker", "execute",
           "Worker.execute_from_commandline", "BaseEventLoop.run_until_complete",
           "BaseEventLoop.run_forever", "BaseEventLoop._run_once", "Handle._run",
           "Service._execute_task", "Retrier.__call__"}
#: The event loop waiting for work, not working
IDLE = {"EpollSelector.select", "select", "poll"}


def spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--output", out, "--rate", "100",
                             "--format", "chrometrace", "--idle", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def busy_by_window(trace: str, window: float, top: int = 6) -> dict[int, list[tuple[str, float]]]:
    """Per window (its index from the trace's start), the main thread's busiest frames.

    py-spy's Chrome trace merges equal consecutive stacks into begin/end pairs; with
    idle samples kept, the intervals cover the thread's time. A frame's time is
    inclusive; the loop's own frames and its idle wait are left out.
    """
    events = json.loads(Path(trace).read_text() or "[]")
    main_tid = Counter(e["tid"] for e in events).most_common(1)[0][0] if events else None
    open_: dict[tuple[str, int], list[int]] = defaultdict(list)
    busy: dict[int, Counter[str]] = defaultdict(Counter)
    spans: list[tuple[str, int, int]] = []
    for e in events:
        if e["tid"] != main_tid:
            continue
        key = (e["name"], e["args"].get("line", 0))
        if e["ph"] == "B":
            open_[key].append(e["ts"])
        elif e["ph"] == "E" and open_[key]:
            spans.append((e["name"], open_[key].pop(), e["ts"]))
    for name, begin, end in spans:
        if name in GENERIC or name in IDLE:  # the loop's own frames, and its wait for work
            continue
        w0, w1 = int(begin / 1e6 // window), int(end / 1e6 // window)
        for w in range(w0, w1 + 1):
            lo, hi = max(begin, w * window * 1e6), min(end, (w + 1) * window * 1e6)
            if hi > lo:
                busy[w][name] += (hi - lo) / 1e6
    return {w: [(n, round(t, 2)) for n, t in c.most_common(top)] for w, c in sorted(busy.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_broker_argument(ap)
    ap.add_argument("--rate", type=float, default=6000.0, help="events/s (single-event messages)")
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--window", type=float, default=5.0, help="seconds per reported window")
    ap.add_argument("--settle", action="store_true",
                    help="first send the whole rounds the bench sends an engine subject")
    ap.add_argument("--py-spy", dest="py_spy", metavar="FILE.json",
                    help="record the worker (py-spy, Chrome trace) and list each window's busiest frames")
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
        if args.settle:
            rounds = settle_rounds(run.settings, plan.timeline(pool, base))
            print(f"settling: {rounds} rounds in {settled(run, rounds)} s", flush=True)
        recorder = spy(run.pid, args.py_spy) if args.py_spy else None
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
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its trace and exits
            recorder.wait(120)
        run.proc.stop()
    if args.py_spy:
        frames = busy_by_window(args.py_spy, args.window)
        for i, w in enumerate(windows):
            w["busy_s"] = frames.get(i, [])
            print(f"{w['t_s']:>7} s  p99 {w['p99_ms']:>8} ms  " +
                  ", ".join(f"{n} {t}" for n, t in w["busy_s"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = stamped({"command": f"python load_tests/latency_windows.py --broker {args.broker} "
                              f"--rate {args.rate:g} --seconds {args.seconds:g} --window {args.window:g}"
                              + (" --settle" if args.settle else "")
                              + (f" --py-spy {args.py_spy}" if args.py_spy else ""),
                   "sent_events": sent.events, "windows": windows}, args.broker)
    path = RESULTS / "latency_windows.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    worst = max((w["p99_ms"] for w in windows if math.isfinite(w["p99_ms"])), default=None)
    print(f"{broker_name}: {sent.events:,} events sent in {len(windows)} windows, worst window p99 "
          f"{worst} ms; saved {path}")


if __name__ == "__main__":
    run_script(main)
