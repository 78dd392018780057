"""The feature store on one Valkey node versus a 3-master + 3-replica Valkey cluster.

The same generated history is applied through RedisFeatureStore (the worker's own
path: batches of 500 events, one Lua call per customer, memberships written for
every customer) to each target in turn:

* ``single``: one Valkey node, as streamseg has always run;
* ``cluster``: the cluster, no ``WAIT`` (``STREAMSEG_REDIS_WAIT_REPLICAS=0``);
* ``cluster+wait1``: the cluster, each batch acknowledged only once one replica
  of every node written has it (``STREAMSEG_REDIS_WAIT_REPLICAS=1``).

For each: events applied per second (one client, one event loop: the store's
cost per batch, as one worker would see it), the commands each master ran
(``INFO commandstats``; the largest share must stay under half), and the growth
of ``used_memory`` summed over the masters per customer. No broker is started.

    python load_tests/cluster_bench.py --customers 3000 --days 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import redis
from common import NO_BROKER, announce, run_script, stamped, valkey_only
from redis_memory import batches

from streamseg.devstack.valkey_cluster import ValkeyCluster
from streamseg.features.keys import Keys
from streamseg.features.store import Membership, RedisFeatureStore

RESULTS = Path(__file__).parent / "results"
IGNORED = ("cmdstat_info", "cmdstat_cluster", "cmdstat_ping", "cmdstat_flushall", "cmdstat_command",
           "cmdstat_script", "cmdstat_config")


def masters(ports: list[int]) -> list[redis.Redis]:
    out = []
    for p in ports:
        client = redis.Redis(port=p)
        if client.execute_command("ROLE")[0] == b"master":
            out.append(client)
    return out


def snapshot(nodes: list[redis.Redis]) -> list[tuple[int, int]]:
    """Per master: (commands run, used_memory)."""
    out = []
    for n in nodes:
        stats = n.info("commandstats")
        calls = sum(int(v["calls"]) for k, v in stats.items() if k not in IGNORED)
        out.append((calls, int(n.info("memory")["used_memory"])))
    return out


async def run(url: str, ports: list[int], customers: int, days: float, wait: int) -> dict:
    nodes = masters(ports)
    store = RedisFeatureStore.from_url(url, Keys(f"b{wait}{len(nodes)}"), dedup_horizon_days=30,
                                       retention_days=180, wait_replicas=wait)
    history = list(batches(customers, days))
    try:
        await store.apply(history[0][:1])  # load the script before the baseline
        before = snapshot(nodes)
        t = time.perf_counter()
        for batch in history:
            await store.apply(batch)
        apply_s = time.perf_counter() - t
        cids = sorted({e.customer_id for b in history for e in b})
        for i in range(0, len(cids), 500):
            await store.write_memberships([Membership(c, j % 6, None, 1.0, 1, "x")
                                           for j, c in enumerate(cids[i:i + 500])])
        sizes = await store.segment_sizes()
        after = snapshot(nodes)
    finally:
        await store.close()
    calls = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
    assert sum(sizes.values()) == len(cids), sizes
    return {"events": sum(len(b) for b in history), "customers": len(cids),
            "events_per_second": round(sum(len(b) for b in history) / apply_s),
            "commands_per_master": calls,
            "largest_master_share": round(max(calls) / sum(calls), 3),
            "used_memory_bytes_per_customer": round(
                sum(a[1] - b[1] for a, b in zip(after, before, strict=True)) / len(cids))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--days", type=float, default=30.0)
    args = ap.parse_args()
    announce(NO_BROKER)
    result: dict[str, object] = {}
    with valkey_only() as st:
        result["single"] = asyncio.run(run(st.redis_url, [st.redis_port], args.customers, args.days, 0))
    cluster = ValkeyCluster(Path(tempfile.mkdtemp(prefix="streamseg-cluster-"))).start()
    try:
        ports = [n.port for n in cluster.nodes]
        result["cluster"] = asyncio.run(run(cluster.url, ports, args.customers, args.days, 0))
        result["cluster+wait1"] = asyncio.run(run(cluster.url, ports, args.customers, args.days, 1))
    finally:
        cluster.stop()
    RESULTS.mkdir(exist_ok=True)
    out = stamped(result, NO_BROKER)
    (RESULTS / "cluster_bench.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_script(main)
