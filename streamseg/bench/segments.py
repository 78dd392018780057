"""Segment quality under load: the engine's published memberships against the planted personas.

The bench's pool comes from the persona simulator, so every customer it sends
has a known persona (a renamed pass's ``r<k>c000123`` has the persona of
``c000123``). After a phase, the customers the phase sent events for are looked
up in the subject's Redis prefix -- the memberships the engine keeps there are
the published truth: ``streamseg api`` serves them, and each is written after the
change was published on ``segment-updates.v1``, so the topic's consumers converge
to the same ids (reading the topic instead would mean consuming its whole history
after every phase). The adjusted Rand index of those ids against the personas is
the phase's quality figure; customers the engine has not assigned yet are counted
but left out of the index.

Beside it, the in-process quality benchmark (``load_tests/quality_bench.py``) on
a stream of the same personas -- same customers, days and seed as the pool, no
broker, no load -- gives the figure the engine reaches when nothing hurries it.

>>> from streamseg.bench.load import PoolEvent
>>> pool = Pool([PoolEvent(False, b"c1", b"", b""), PoolEvent(False, b"c2", b"", b"")], 2,
...             {"c1": "saver", "c2": "spender"})
>>> sorted(touched(pool, [(0, 0, 1), (2, 1, 1)], 1, 4).items())  # the 2nd event of pass 0, all of pass 1
[('c2', 'spender'), ('r1c1', 'saver'), ('r1c2', 'spender')]
>>> sorted(touched(pool, [(0, 0, 2)], 1, 3))  # a round of two lanes: c1 of pass 1, c2 of pass 0
['c2', 'r1c1']
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamseg.bench.load import Pool, renamed
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.quality import adjusted_rand_index
from streamseg.settings import Settings

QUALITY_BENCH = Path(__file__).parents[2] / "load_tests" / "quality_bench.py"


def touched(pool: Pool, rounds: Sequence[tuple[int, int, int]], start: int, end: int) -> dict[str, str]:
    """Customer id -> planted persona for the events a load took from ``start`` to ``end``
    (cursor counts), given its ``rounds`` (:attr:`~streamseg.bench.load.Cursor.rounds`: a round's
    ``lanes`` passes interleave, event ``i`` of lane ``j`` at ``i * lanes + j``)."""
    n = len(pool.events)
    out: dict[str, str] = {}
    for at, k, lanes in rounds:
        lo, hi = max(start - at, 0), min(end - at, n * lanes)
        for j in range(lanes) if hi > lo else ():
            first, last = -(-(lo - j) // lanes), (hi - 1 - j) // lanes  # lane j's events in [lo, hi)
            if last < first:
                continue
            cids = (pool.truth if first == 0 and last == n - 1
                    else {ev.customer_id.decode() for ev in pool.events[first:last + 1]})
            out.update({renamed(c, k + j): pool.truth[c] for c in cids})
    return out


def round_truth(pool: Pool, first_pass: int, lanes: int) -> dict[str, str]:
    """Customer id -> planted persona for every customer of a round's ``lanes`` passes."""
    return {renamed(c, first_pass + j): p for j in range(lanes) for c, p in pool.truth.items()}


async def _memberships(settings: Settings, cids: list[str]) -> dict[str, int]:
    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    try:
        out: dict[str, int] = {}
        for i in range(0, len(cids), 2000):
            chunk = cids[i:i + 2000]
            for cid, state in zip(chunk, await store.states(chunk), strict=True):
                if isinstance(state.get("seg"), float):
                    out[cid] = int(state["seg"])
        return out
    finally:
        await store.close()


def published_ari(settings: Settings, truth: dict[str, str]) -> dict[str, Any]:
    """ARI of the memberships in ``settings``' Redis prefix against ``truth`` (id -> persona)."""
    seg = asyncio.run(_memberships(settings, sorted(truth)))
    ids = sorted(seg)
    ari = adjusted_rand_index([truth[c] for c in ids], [seg[c] for c in ids]) if len(ids) > 1 else None
    return {"ari": None if ari is None else round(ari, 4), "customers": len(truth),
            "assigned": len(ids)}


def in_process_reference(pool: Pool, redis_url: str) -> dict[str, Any]:
    """``load_tests/quality_bench.py`` on the pool's personas (customers, days, seed): its online ARI.

    None when the benchmark's source is not beside the package (an installed wheel).
    """
    if not QUALITY_BENCH.exists():
        return {"ari": None, "note": f"{QUALITY_BENCH} not found"}
    module = sys.modules.get("quality_bench")
    if module is None:
        spec = importlib.util.spec_from_file_location("quality_bench", QUALITY_BENCH)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["quality_bench"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    days, seed = pool.days, pool.seed
    cfg = module.Config(customers=pool.customers, days=days, seed=seed, stationary_rounds=0)
    res = module.bench(cfg, redis_url)
    return {"ari": res.online.ari, "offline_ari": res.offline.ari, "customers": pool.customers,
            "days": days, "seed": seed, "events": res.events, "seconds": res.seconds,
            "command": f"python load_tests/quality_bench.py --customers {pool.customers} "
                       f"--days {days:g} --seed {seed} --stationary-rounds 0"}
