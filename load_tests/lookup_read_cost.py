"""What a lookup's Redis read costs with and without the customer's history, on a real Valkey.

Customers get one click and ``--moves`` segment changes (the history kept at 20),
then each is read ``--repeat`` times, one at a time, through the store's
``states`` (the state hash alone) and ``lookups`` (the hash and the history
list in one round trip), in alternating rounds. Prints wall time and this
process's CPU per read. No broker is started.

    python load_tests/lookup_read_cost.py --customers 1000 --moves 20
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import NO_BROKER, announce, run_script, valkey_only

from streamseg.events.models import ClickEvent
from streamseg.features.keys import Keys
from streamseg.features.store import Membership, RedisFeatureStore

T0 = 1_767_225_600_000


async def seed(store: RedisFeatureStore, cids: list[str], moves: int) -> None:
    await store.apply([ClickEvent.model_validate(
        {"event_id": f"{c}-1", "customer_id": c, "ts": T0, "type": "page_view", "session_id": "s"})
        for c in cids])
    for m in range(moves):
        await store.write_memberships([Membership(c, (i + m) % 6, None, 1.0, m + 1, "x", ts_ms=T0 + m,
                                                  cause="purchase_frequency_30d")
                                       for i, c in enumerate(cids)])


async def run(url: str, customers: int, moves: int, repeat: int, rounds: int) -> None:
    store = RedisFeatureStore.from_url(url, Keys("lookupcost"), dedup_horizon_days=30,
                                       retention_days=30)
    cids = [f"c{i}" for i in range(customers)]
    try:
        await seed(store, cids, moves)
        for rnd in range(rounds):
            for name, read in (("state only", store.states), ("state + history", store.lookups)):
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(repeat):
                    for c in cids:
                        await read([c])
                n = repeat * len(cids)
                print(f"round {rnd + 1} {name:16s} wall {1e6 * (time.perf_counter() - wall) / n:6.1f} µs"
                      f"  client CPU {1e6 * (time.process_time() - cpu) / n:6.1f} µs per read")
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--moves", type=int, default=20, help="segment changes per customer (kept: 20)")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    announce(NO_BROKER)
    with valkey_only() as st:
        asyncio.run(run(st.redis_url, args.customers, args.moves, args.repeat, args.rounds))


if __name__ == "__main__":
    run_script(main)
