"""Replay throughput: history CSV -> Kafka (rows/s), then one worker draining it (events/s).

Real parts only: a broker (Apache Kafka; Tansu with ``--broker tansu``), Valkey,
`streamseg replay` and `streamseg worker` processes. The generator writes a
clicks CSV and an orders CSV (at least 100k rows together by default);
`streamseg replay` sends both, merged by event time, as fast as possible; then a worker starts on the loaded topics
and the drain is timed as in drain_bench.py. Baseline in the same run:
`streamseg generate` producing the same history straight from memory (same
producer library, no file reading or validation), so the replay figure shows
what reading, mapping, validating and sorting cost.

Prints a table and saves load_tests/results/replay.json and replay.md, which name
the broker.

    python load_tests/replay_bench.py [--broker kafka|tansu] --customers 600 --days 120
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import add_broker_argument, announce, run_script, stamped
from drain_bench import processed, rss_mb
from prometheus_client.parser import text_string_to_metric_families

from streamseg.devstack import DevStack, ManagedProcess, free_port
from streamseg.devstack.processes import wait_for_port
from streamseg.generate import assign_personas, simulate
from streamseg.timeunits import HOUR_MS

RESULTS = Path(__file__).parent / "results"
CLICK_COLUMNS = ["event_id", "customer_id", "ts", "type", "session_id", "device", "channel",
                 "category", "product_id", "price"]
ORDER_COLUMNS = ["order_id", "customer", "date", "amount", "currency", "items", "categories",
                 "discount_amount", "refund"]
ORDER_MAP = "event_id=order_id,customer_id=customer,ts=date"


def write_history(workdir: Path, customers: int, days: float, end_ms: int) -> tuple[Path, Path, int]:
    """The generator's history as two CSV files; returns their paths and the row count."""
    clicks, orders = workdir / "clicks.csv", workdir / "orders.csv"
    rows = 0
    with clicks.open("w", newline="") as cf, orders.open("w", newline="") as of:
        cw, ow = csv.writer(cf), csv.writer(of)
        cw.writerow(CLICK_COLUMNS)
        ow.writerow(ORDER_COLUMNS)
        for ev in simulate(assign_personas(customers, seed=7), days=days, end_ms=end_ms, seed=7):
            p = ev.payload
            if ev.topic_role == "clickstream":
                cw.writerow([p.get(c, "") for c in CLICK_COLUMNS])
            else:
                ow.writerow([p["event_id"], p["customer_id"], p["ts"], p["amount"], p["currency"],
                             p["items"], "|".join(p["categories"]), p["discount_amount"], p["refund"]])
            rows += 1
    return clicks, orders, rows


def outcomes(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "streamseg_events_total":
                out[s.labels["outcome"]] = out.get(s.labels["outcome"], 0.0) + s.value
            elif s.name == "streamseg_dead_letters_total" and s.value:  # why, e.g. late
                key = f"dead_letter_{s.labels['reason']}"
                out[key] = out.get(key, 0.0) + s.value
    return out


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a streamseg command; wall seconds and what it printed."""
    t = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return time.monotonic() - t, proc.stdout


def drain(st: DevStack, env: dict[str, str], total: int) -> dict[str, float]:
    port = free_port()
    env = {**env, "STREAMSEG_WEB_PORT": str(port)}
    worker = ManagedProcess("worker", [sys.executable, "-m", "streamseg", "worker"],
                            st.dir / "worker.log", env).start()
    st.processes.append(worker)
    wait_for_port(port, 60, worker.proc)
    t0 = first = None
    while True:
        n = processed(port)
        now = time.monotonic()
        if n > 0 and t0 is None:
            t0, first = now, n
        if n >= total:
            break
        time.sleep(0.25)
    secs = now - t0 if t0 else float("nan")
    return {"seconds": round(secs, 2), "events_per_second": round((total - (first or 0)) / secs),
            "worker_rss_mb": round(rss_mb(worker.proc.pid), 1),  # type: ignore[union-attr]
            **{f"outcome_{k}": v for k, v in outcomes(port).items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_broker_argument(ap)
    ap.add_argument("--customers", type=int, default=600)
    ap.add_argument("--days", type=float, default=120.0)
    args = ap.parse_args()
    broker_name = announce(args.broker)
    end_ms = int(time.time() * 1000) - HOUR_MS
    with DevStack(broker=args.broker) as st:
        clicks, orders, rows = write_history(st.dir, args.customers, args.days, end_ms)
        base = {**os.environ, **st.client_env,
                 "STREAMSEG_LOG_LEVEL": "warn"}
        env = {**base, "STREAMSEG_TOPIC_CLICKSTREAM": "r.clicks", "STREAMSEG_TOPIC_TRANSACTIONS": "r.orders",
               "STREAMSEG_TOPIC_DLQ": "r.dlq", "STREAMSEG_TOPIC_SEGMENT_UPDATES": "r.updates",
               "STREAMSEG_KEY_PREFIX": "r", "STREAMSEG_APP_ID": "replay-bench"}
        secs, out = timed([sys.executable, "-m", "streamseg", "replay", str(clicks), str(orders),
                           "--map", ORDER_MAP, "--json", "--no-progress"], env)
        summary = json.loads(out)
        replay_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        gen_env = {**base, "STREAMSEG_TOPIC_CLICKSTREAM": "g.clicks", "STREAMSEG_TOPIC_TRANSACTIONS": "g.orders",
                   "STREAMSEG_TOPIC_DLQ": "g.dlq", "STREAMSEG_TOPIC_SEGMENT_UPDATES": "g.updates"}
        _, out = timed([sys.executable, "-m", "streamseg", "generate", "--customers", str(args.customers),
                        "--days", str(args.days)], gen_env)
        gen = json.loads(out.strip().splitlines()[-1])
        worker = drain(st, env, summary["produced"])
    result = stamped({
        "rows": rows, "customers": args.customers, "days": args.days,
        "file_mb": round((clicks.stat().st_size + orders.stat().st_size) / 1e6, 1),
        "replay_wall_seconds": round(secs, 2),
        "replay_load_seconds": round(summary["load_seconds"], 2),
        "replay_send_seconds": round(summary["send_seconds"], 2),
        "replay_rows_per_second_end_to_end": round(rows / secs),
        "replay_rows_per_second_send": round(summary["rows_per_second"]),
        "replay_peak_rss_mb": round(replay_rss, 1),
        "replay_rejected": summary["rejected"],
        "baseline_generate_events_per_second": round(gen["events_per_second"]),
        "worker_drain": worker,
    }, args.broker)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replay.json").write_text(json.dumps(result, indent=2) + "\n")
    table = "\n".join([
        "| measure | value |", "|---|---|",
        f"| broker | {broker_name} |",
        f"| rows (clicks + orders CSV, {result['file_mb']} MB) | {rows:,} |",
        f"| replay, end to end (process start to exit) | {result['replay_rows_per_second_end_to_end']:,} rows/s |",
        f"| replay, read + validate + sort | {result['replay_load_seconds']} s |",
        f"| replay, send phase | {result['replay_rows_per_second_send']:,} rows/s |",
        f"| replay peak RSS | {result['replay_peak_rss_mb']} MB |",
        f"| baseline: `streamseg generate` (no file) | {result['baseline_generate_events_per_second']:,} events/s |",
        f"| one worker draining the replay | {worker['events_per_second']:,} events/s |",
        f"| worker outcomes | {', '.join(f'{k[8:]} {v:,.0f}' for k, v in worker.items() if k.startswith('outcome_'))} |",
    ])
    (RESULTS / "replay.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    run_script(main)
