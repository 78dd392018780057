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
included) over the paced phase, and gives each window its longest stretches
without the event loop waiting, with the work inside them (a batch, a timer's
function), and the whole run's work by calls, seconds, longest and p90.

Prints the windows and saves ``load_tests/results/latency_windows.json``, which names the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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
from itertools import pairwise
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
#: Frames every busy sample of a worker's main thread passes through, and the wrappers of
#: its timers: not what it did
GENERIC = {"<module>", "_run_module_as_main", "_run_code", "main", "run_worker", "execute",
           "Worker.execute_from_commandline", "BaseEventLoop.run_until_complete",
           "BaseEventLoop.run_forever", "BaseEventLoop._run_once", "Handle._run",
           "Service._execute_task", "Retrier.__call__", "App._task.<locals>._wrapped",
           "App.timer.<locals>._inner.<locals>.around_timer", "Ticks.attempt",
           "Ticks.every.<locals>.register.<locals>.guarded"}
#: The event loop waiting for work, not working
IDLE = {"EpollSelector.select", "select", "poll"}


def spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--output", out, "--rate", "100",
                             "--format", "chrometrace", "--idle", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def busy_stretches(trace: str, window: float, top: int = 3) -> tuple[
        dict[int, list[dict[str, Any]]], dict[str, dict[str, float]]]:
    """What kept the worker's event loop from waiting, from py-spy's Chrome trace.

    Per window (its index from the trace's start): the ``top`` longest stretches between
    two waits of the loop, each with the work inside it by time. And for the whole run,
    per piece of work (its first frame below the loop's and the timers' wrappers: a
    batch, a timer's function, the fetcher): calls, seconds, longest and p90 in ms.
    py-spy merges equal consecutive stacks, so two calls back to back may count as one.
    """
    events = json.loads(Path(trace).read_text() or "[]")
    main_tid = Counter(e["tid"] for e in events).most_common(1)[0][0] if events else None
    stack: list[tuple[str, int, bool]] = []
    work: list[tuple[int, int, str]] = []  # (begin, end, name) of each piece of work
    idle: list[tuple[int, int]] = []
    for e in events:
        if e["tid"] != main_tid:
            continue
        if e["ph"] == "B":
            root = (e["name"] not in GENERIC and e["name"] not in IDLE
                    and not any(is_root for _, _, is_root in stack))
            stack.append((e["name"], e["ts"], root))
        elif stack:
            name, begin, root = stack.pop()
            if name in IDLE:
                idle.append((begin, e["ts"]))
            elif root:
                work.append((begin, e["ts"], name))
    idle.sort()
    work.sort()
    begins = [begin for begin, _, _ in work]  # one piece of work at a time on the main thread
    by_window: dict[int, list[dict[str, Any]]] = defaultdict(list)
    gaps = sorted(((a_end, b_begin) for (_, a_end), (b_begin, _) in pairwise(idle)
                   if b_begin > a_end), key=lambda g: g[0] - g[1])
    for g0, g1 in gaps:
        w = int(g0 / 1e6 // window)
        if len(by_window[w]) >= top:
            continue
        inside: Counter[str] = Counter()
        for begin, end, name in work[max(0, bisect.bisect_left(begins, g0) - 1):]:
            if begin >= g1:
                break
            if end > g0:
                inside[name] += (min(end, g1) - max(begin, g0)) / 1e3
        by_window[w].append({"ms": round((g1 - g0) / 1e3), "work_ms": {
            n: round(t) for n, t in inside.most_common(3)}})
    spans: dict[str, list[float]] = defaultdict(list)
    for begin, end, name in work:
        spans[name].append((end - begin) / 1e3)
    summary = {name: {"calls": len(v), "seconds": round(sum(v) / 1e3, 2), "max_ms": round(max(v)),
                      "p90_ms": round(sorted(v)[int(len(v) * 0.9)])}
               for name, v in sorted(spans.items(), key=lambda kv: -sum(kv[1]))[:12]}
    return dict(by_window), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_broker_argument(ap)
    ap.add_argument("--rate", type=float, default=6000.0, help="events/s (single-event messages)")
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--window", type=float, default=5.0, help="seconds per reported window")
    ap.add_argument("--settle", action="store_true",
                    help="first send the whole rounds the bench sends an engine subject")
    ap.add_argument("--py-spy", dest="py_spy", metavar="FILE.json",
                    help="record the worker (py-spy, Chrome trace): what kept its event loop busy")
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
    work: dict[str, dict[str, float]] = {}
    if args.py_spy:
        stretches, work = busy_stretches(args.py_spy, args.window)
        for i, w in enumerate(windows):
            w["longest_busy"] = stretches.get(i, [])
            print(f"{w['t_s']:>7} s  p99 {w['p99_ms']:>8} ms  " + " | ".join(
                f"{b['ms']} ms: " + ", ".join(f"{n} {t}" for n, t in b["work_ms"].items())
                for b in w["longest_busy"]), flush=True)
        for name, f in work.items():
            print(f"{name}: {f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = stamped({"command": f"python load_tests/latency_windows.py --broker {args.broker} "
                              f"--rate {args.rate:g} --seconds {args.seconds:g} --window {args.window:g}"
                              + (" --settle" if args.settle else "")
                              + (f" --py-spy {args.py_spy}" if args.py_spy else ""),
                   "sent_events": sent.events, "windows": windows, "work": work}, args.broker)
    path = RESULTS / "latency_windows.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    worst = max((w["p99_ms"] for w in windows if math.isfinite(w["p99_ms"])), default=None)
    print(f"{broker_name}: {sent.events:,} events sent in {len(windows)} windows, worst window p99 "
          f"{worst} ms; saved {path}")


if __name__ == "__main__":
    run_script(main)
