"""Replaying the same purchase history twice through a real worker gives the same segments.

A replay runs at full speed: a wall second holds days of event time. The
leader's merges, re-fits and re-scoring must follow event time (see
docs/model.md, "Replays: the model follows event time"), or how many of them
fall into a day of history depends on how fast the machine is, and two runs of
the same files end with different segments.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sklearn.metrics import adjusted_rand_score

from streamseg.devstack import DevStack
from streamseg.features.keys import Keys
from streamseg.features.registry import DAY_MS
from streamseg.generate import assign_personas, simulate
from streamseg.leader.pace import HISTORY_IDLE_MS
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.support import wait_until

from .conftest import WorkerProcess, unique_settings
from .test_replay import TXN_MAP, events_total, run_replay, write_txn_csv

pytestmark = pytest.mark.integration

DAYS = 60
END_MS = int(time.time() * 1000) - int(DAY_MS)


def transactions(customers: int, seed: int) -> list[dict]:
    """A purchase history with no clickstream: the generator's orders and refunds only."""
    truth = assign_personas(customers, seed=seed)
    return [ev.payload for ev in simulate(truth, days=DAYS, end_ms=END_MS, seed=seed)
            if ev.topic_role == "transactions"]


async def memberships(settings: Settings) -> dict[str, int]:
    """Every customer's current segment id, read from Valkey."""
    keys = Keys(settings.key_prefix)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        out = {}
        async for key in client.scan_iter(match=keys.customer_pattern(), count=1000):
            seg = await client.hget(key, "seg")
            if seg is not None:
                out[keys.customer_of(key.decode())] = int(float(seg))
        return out
    finally:
        await client.aclose()


async def replay_once(stack: DevStack, csv: Path, n_events: int, log_dir: Path) -> dict[str, int]:
    """The file through a fresh worker (own topics, key prefix); its final memberships."""
    # defaults, but no customer-value fit: it decides no membership (values only name
    # segments), and on a 2-core machine its pymc fit took a core from the replay
    settings = unique_settings(stack, n_segments=4, dedup_horizon_days=DAYS + 30.0,
                               value_fit=False)
    await ensure_topics(settings)
    log_dir.mkdir()
    # the history is in the topics before the worker reads it: the replay's producer writes
    # each partition in batches of its own, so a worker reading along sees the partitions
    # skewed by up to a batch (docs/model.md)
    await asyncio.to_thread(run_replay, settings, csv, "--map", TXN_MAP)
    worker = WorkerProcess(settings, log_dir).start()
    try:
        # a step of history per day (a re-fit, profiles, the sweep) holds the batches back: 60
        # steps take under a minute on a quiet machine, minutes on a loaded one; this bounds a hang
        await wait_until(lambda: events_total(settings, "processed") >= n_events, 360,
                         lambda: f"{n_events} events processed\n{worker.log()[-3000:]}")
        seen: list[dict[str, int]] = []

        # done with the history: its last step runs once no batch of it came for
        # HISTORY_IDLE_MS (5 s), on the next merge tick; the memberships must then have
        # stood still for longer than that, not for two reads that can both fall before it
        quiet = int(HISTORY_IDLE_MS / 1000) + 3

        async def settled() -> bool:
            seen.append(await memberships(settings))
            return len(seen) >= quiet and all(s == seen[-1] for s in seen[-quiet:]) \
                and len(seen[-1]) > 0

        await wait_until(settled, 90, "memberships to settle", interval=1.0)
        # the first model came from a step of the history, fitted on its customers alone; a
        # merge of the worker's clusterer (on the wall-clock timer, or as far as it had got by
        # a step) made it depend on how fast this machine read the history
        assert "published global model v1 from a sample of current customers" in worker.log(), \
            worker.log()[-3000:]
        return seen[-1]
    finally:
        worker.stop()


async def test_replaying_a_purchase_history_twice__gives_the_same_segments(
    stack: DevStack, tmp_path: Path
) -> None:
    txns = transactions(customers=600, seed=3)
    csv = tmp_path / "orders.csv"
    write_txn_csv(csv, txns)
    first = await replay_once(stack, csv, len(txns), tmp_path / "first")
    second = await replay_once(stack, csv, len(txns), tmp_path / "second")

    assert set(first) == set(second) == {t["customer_id"] for t in txns}
    customers = sorted(first)
    ari = adjusted_rand_score([first[c] for c in customers], [second[c] for c in customers])
    assert ari >= 0.95, f"adjusted Rand index between the two replays: {ari:.3f}"
    assert len(set(first.values())) > 1  # a real segmentation, not everyone in one segment
