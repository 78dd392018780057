"""Profile a real `streamseg worker` draining envelopes: CPU per event by process, and py-spy.

The bench's ``engine_batched`` subject, alone and longer: Apache Kafka (Tansu
with ``--broker tansu``), Valkey, the bench's simulated load in envelopes and a
worker launched as the bench launches it. After a warm-up, a backlog of
``--events`` is sent as fast as possible and the worker's drain of it is
measured: CPU time per event of the worker (and its children), Valkey and the
broker from ``/proc``, over the tail the worker drains alone, as ``streamseg
bench`` reports it, plus Valkey's ``INFO commandstats`` per event over the
whole backlog. ``--py-spy FILE`` records the worker's last drain with py-spy
(``--gil``: only the thread holding the GIL, i.e. Python's own CPU time;
``--native`` adds native frames, but pauses the worker to sample it, which
skews the figures). ``--rounds`` repeats the backlog on the same worker, so one
start-up serves several measurements. The bench's own 20 Hz polling of
``/metrics`` is part of what is measured, as in ``streamseg bench``.

    python load_tests/worker_profile.py [--events 200000] [--rounds 3] [--gil --py-spy /tmp/w.txt]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any

import redis
from common import add_broker_argument, announce, run_script, stamped

from streamseg.bench.load import Pool
from streamseg.bench.probe import CpuMeter
from streamseg.bench.runner import Plan, Running, Subject, joined, launch, machine_cpu, warm_up
from streamseg.devstack import DevStack


def commandstats(url: str) -> dict[str, tuple[int, int]]:
    """Valkey's (calls, usec) by command so far."""
    client = redis.Redis.from_url(url)
    try:
        return {k.removeprefix("cmdstat_"): (s["calls"], s["usec"])
                for k, s in client.info("commandstats").items()}
    finally:
        client.close()


def per_event(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
              events: int) -> dict[str, dict[str, float]]:
    """Calls and us of Valkey CPU per event by command between two reads, the costliest first."""
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls > c0:
            out[name] = {"calls": round((calls - c0) / events, 3), "us": round((usec - u0) / events, 2)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["us"])[:10])


def spy(pid: int, out: str, flags: list[str]) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [exe, "record", "--pid", str(pid), "--output", out, "--rate", "200"]
    if out.endswith(".txt"):
        argv += ["--format", "raw"]
    if "--native" not in flags:  # py-spy cannot unwind native frames without pausing
        argv.append("--nonblocking")
    return subprocess.Popen(argv + flags,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one_round(run: Running, events: int, servers: dict[str, int], url: str,
              spy_to: str | None, flags: list[str]) -> dict[str, Any]:
    """One backlog: send it, then measure the worker draining the rest alone."""
    start = run.scrape()
    stats0 = commandstats(url)
    sent = run.send(events)
    produced = run.scrape()
    recorder = spy(run.pid, spy_to, flags) if spy_to else None
    meter = CpuMeter(run.pid, servers)
    end = run.wait_for(start.done + sent.messages, 600, every=0.05)
    used = meter.seconds()
    if recorder is not None:
        recorder.send_signal(2)  # SIGINT: py-spy writes its output and exits
        recorder.wait(60)
    tail = start.events + sent.events - produced.events
    return {"tail_events": int(tail), "tail_seconds": round(end.at - produced.at, 2),
            **machine_cpu(used, tail),
            "valkey_commands_per_event": per_event(stats0, commandstats(url), sent.events)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_broker_argument(ap)
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--events", type=int, default=200_000, help="events per backlog")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--envelope", type=int, default=100)
    ap.add_argument("--py-spy", dest="py_spy", help="record the last round to this file "
                    "(.svg: flame graph, .txt: collapsed stacks)")
    ap.add_argument("--native", action="store_true", help="py-spy --native")
    ap.add_argument("--gil", action="store_true", help="py-spy --gil: only the thread holding "
                    "the GIL, i.e. Python's CPU time (else threads waiting for it count too)")
    args = ap.parse_args()
    announce(args.broker)
    plan = Plan(True, args.customers, 3000, 100, 2.0, 1.5, 0.0, 1.0, args.envelope)
    with DevStack(broker=args.broker) as stack:
        base = stack.settings()
        pool = Pool.simulate(args.customers)
        argv = [sys.executable, "-m", "streamseg", "worker"]
        run = launch(stack, base, pool, Subject("engine_batched", argv, args.envelope), plan)
        joined([run])
        warm_up(run, plan.warmup_events)
        servers = {"valkey": stack.process("valkey").proc.pid,  # type: ignore[union-attr]
                   "broker": stack.process("broker").proc.pid}  # type: ignore[union-attr]
        rounds = []
        for i in range(args.rounds):
            last = i == args.rounds - 1
            r = one_round(run, args.events, servers, base.redis_url,
                          args.py_spy if last else None,
                          ["--native"] * args.native + ["--gil"] * args.gil)
            rounds.append(r)
            print(json.dumps({"round": i, **{k: v for k, v in r.items()
                                              if k != "valkey_commands_per_event"}}), flush=True)
        run.proc.stop()
    totals = [r["machine_cpu_us_per_event"] for r in rounds if r["machine_cpu_us_per_event"]]
    result = stamped({
        "customers": args.customers, "events_per_round": args.events, "envelope": args.envelope,
        "median_us_per_event": {k: median(t[k] for t in totals) for k in totals[0]} if totals else None,
        "rounds": rounds}, args.broker)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_script(main)
