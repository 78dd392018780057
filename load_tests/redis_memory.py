"""Redis bytes per customer, measured on a real Valkey.

Generated history is applied through RedisFeatureStore, the worker's own path
(batches of 500, one Lua call per customer per batch), and every customer gets
a membership written as the worker would. Then two figures: MEMORY USAGE of
each customer's two keys (feature hash, seen-id sorted set), and the growth
of INFO memory's used_memory divided by the number of customers. The sorted
set holds the event and session ids of the last STREAMSEG_DEDUP_HORIZON_DAYS
of each customer's event time, so it dominates for active customers.

``--history N`` (STREAMSEG_CUSTOMER_HISTORY, 20 by default; 0: off) and
``--moves M`` (segment changes written per customer, 1 by default: the first
assignment) measure the per-customer history list as well: its MEMORY USAGE
and the membership writes per second (one pipelined script call per customer).

Prints a table and saves load_tests/results/redis_memory.json and .md. No broker
is started (the results say so).

    python load_tests/redis_memory.py --customers 10000 --days 120
    python load_tests/redis_memory.py --customers 10000 --days 120 --moves 20
    python load_tests/redis_memory.py --customers 10000 --days 120 --moves 20 --history 0
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis.asyncio as aioredis
from common import NO_BROKER, announce, run_script, stamped, valkey_only
from redis.asyncio.cluster import RedisCluster

from streamseg.devstack.valkey_cluster import ValkeyCluster
from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.features.cluster import connect, is_cluster_url
from streamseg.features.keys import Keys
from streamseg.features.store import Membership, RedisFeatureStore
from streamseg.generate import assign_personas, simulate
from streamseg.timeunits import HOUR_MS

RESULTS = Path(__file__).parent / "results"
BATCH = 500


def batches(customers: int, days: float) -> Iterator[list[Event]]:
    """The generated history in event-time order, BATCH events at a time (never all in memory)."""
    end = int(time.time() * 1000) - HOUR_MS
    batch: list[Event] = []
    for ev in simulate(assign_personas(customers, seed=7), days=days, end_ms=end, seed=7):
        model = ClickEvent if ev.topic_role == "clickstream" else TransactionEvent
        batch.append(model.model_validate(ev.payload))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def used_memory(client: aioredis.Redis) -> int:
    """used_memory, summed over the masters on a cluster."""
    if isinstance(client, RedisCluster):
        nodes = client.get_primaries()
        return sum([int((await client.info("memory", target_nodes=n))["used_memory"]) for n in nodes])
    return int((await client.info("memory"))["used_memory"])


async def usage(client: aioredis.Redis, keys: Keys, cids: list[str]) -> list[tuple[int, ...]]:
    """Per customer: MEMORY USAGE of the hash, the sorted set and the history list, and their
    field/member/entry counts."""
    pipe = client.pipeline(transaction=False)
    for c in cids:
        pipe.memory_usage(keys.state(c), samples=0)
        pipe.memory_usage(keys.seen(c), samples=0)
        pipe.memory_usage(keys.history(c), samples=0)
        pipe.hlen(keys.state(c))
        pipe.zcard(keys.seen(c))
        pipe.llen(keys.history(c))
    flat = await pipe.execute()
    return [tuple(int(x or 0) for x in flat[i : i + 6]) for i in range(0, len(flat), 6)]


async def write_moves(store: RedisFeatureStore, cids: list[str], moves: int) -> float:
    """``moves`` segment changes per customer (the first assignment first), as the worker
    writes them; returns the seconds they took."""
    t = time.perf_counter()
    for m in range(moves):
        await store.write_memberships([
            Membership(c, (i + m) % 6, None if m == 0 else (i + m - 1) % 6, 1.234, 1 + m, "x",
                       ts_ms=1_767_225_600_000 + m, cause="purchase_frequency_30d")
            for i, c in enumerate(cids)])
    return time.perf_counter() - t


def stats(values: list[int]) -> dict[str, float]:
    q = statistics.quantiles(values, n=20)
    return {"mean": round(statistics.fmean(values)), "p50": round(statistics.median(values)),
            "p95": round(q[18]), "max": max(values)}


async def run(redis_url: str, customers: int, days: float, horizon: float, keep: int = 20,
              moves: int = 1) -> dict:
    keys = Keys("mem")
    store = RedisFeatureStore.from_url(redis_url, keys, dedup_horizon_days=horizon, retention_days=180,
                                       history=keep)
    client = connect(redis_url) if is_cluster_url(redis_url) else aioredis.Redis.from_url(redis_url)
    n_events, seen = 0, set()
    try:
        history = batches(customers, days)
        first = next(history)
        await store.apply(first[:1])  # load the script before the baseline
        await client.flushall()
        before = await used_memory(client)
        t = time.perf_counter()
        for batch in itertools.chain([first], history):
            await store.apply(batch)
            n_events += len(batch)
            seen.update(e.customer_id for e in batch)
        apply_s = time.perf_counter() - t
        cids = sorted(seen)
        single = not isinstance(client, RedisCluster)
        if single:
            await client.config_resetstat()  # the membership script's own server time, below
        moves_s = await write_moves(store, cids, moves)
        script_us = (await client.info("commandstats"))["cmdstat_evalsha"]["usec_per_call"] \
            if single else None
        after = await used_memory(client)
        per = await usage(client, keys, cids)
    finally:
        await store.close()
        await client.aclose()
    return {
        "customers": len(cids), "events": n_events, "days": days, "dedup_horizon_days": horizon,
        "customer_history": keep, "moves_per_customer": moves,
        "apply_events_per_second": round(n_events / apply_s),
        "membership_writes_per_second": round(moves * len(cids) / moves_s),
        "membership_script_server_us_per_call": script_us,  # INFO commandstats (one node only)
        "info_used_memory_delta_bytes_per_customer": round((after - before) / len(cids)),
        "memory_usage_total_bytes": stats([h + z + lst for h, z, lst, *_ in per]),
        "memory_usage_hash_bytes": stats([row[0] for row in per]),
        "memory_usage_seen_zset_bytes": stats([row[1] for row in per]),
        "memory_usage_history_list_bytes": stats([row[2] for row in per]),
        "hash_fields": stats([row[3] for row in per]),
        "seen_zset_members": stats([row[4] for row in per]),
        "history_entries": stats([row[5] for row in per]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--days", type=float, default=120.0)
    ap.add_argument("--horizon", type=float, default=30.0, help="dedup horizon (days)")
    ap.add_argument("--history", type=int, default=20,
                    help="segment changes kept per customer (STREAMSEG_CUSTOMER_HISTORY; 0: off)")
    ap.add_argument("--moves", type=int, default=1,
                    help="segment changes written per customer (1: the first assignment only)")
    ap.add_argument("--redis-cluster", action="store_true",
                    help="on a 3-master + 3-replica Valkey cluster (saves redis_memory_cluster.*)")
    args = ap.parse_args()
    broker_name = announce(NO_BROKER)
    if args.redis_cluster:
        cluster = ValkeyCluster(Path(tempfile.mkdtemp(prefix="streamseg-cluster-"))).start()
        try:
            result = stamped(asyncio.run(run(cluster.url, args.customers, args.days, args.horizon,
                                           args.history, args.moves)),
                             NO_BROKER)
        finally:
            cluster.stop()
    else:
        with valkey_only() as st:
            result = stamped(asyncio.run(run(st.redis_url, args.customers, args.days, args.horizon,
                                           args.history, args.moves)),
                             NO_BROKER)
    name = "redis_memory_cluster" if args.redis_cluster else "redis_memory"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = ["| bytes per customer | mean | p50 | p95 | max |", "|---|---|---|---|---|"]
    for row in ("memory_usage_total_bytes", "memory_usage_hash_bytes", "memory_usage_seen_zset_bytes",
                "memory_usage_history_list_bytes", "hash_fields", "seen_zset_members",
                "history_entries"):  # not `name`: the .md below is saved under it
        s = result[row]
        rows.append(f"| {row} | {s['mean']:,} | {s['p50']:,} | {s['p95']:,} | {s['max']:,} |")
    rows.append(f"| INFO used_memory delta / customer | {result['info_used_memory_delta_bytes_per_customer']:,}"
                " | | | |")
    rows.append(f"| membership writes / s | {result['membership_writes_per_second']:,} | | | |")
    rows.append(f"| membership script, server µs / call | "
                f"{result['membership_script_server_us_per_call']} | | | |")
    table = (f"{result['customers']:,} customers, {result['events']:,} events over {args.days:g} days, "
             f"dedup horizon {args.horizon:g} days, {args.moves} segment change(s) per customer, "
             f"history kept {args.history}; broker: {broker_name}\n\n" + "\n".join(rows))
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    run_script(main)
