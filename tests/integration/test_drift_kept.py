"""Drift reports kept in Redis for ``GET /v1/drift``: newest first, bounded, on one node and a cluster."""

from __future__ import annotations

import uuid

import pytest

from streamseg.devstack import DevStack
from streamseg.devstack.valkey_cluster import ValkeyCluster
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore

from .test_redis_cluster import healthy  # noqa: F401 (fixture: every cluster node up)

pytestmark = pytest.mark.integration


async def test_kept_reports__are_the_newest_per_window_newest_first_and_bounded(
        stack: DevStack) -> None:
    await check_kept_reports(stack.redis_url)


async def test_kept_reports__on_a_cluster_too(healthy: ValkeyCluster) -> None:  # noqa: F811
    await check_kept_reports(healthy.url)


async def check_kept_reports(url: str) -> None:
    store = RedisFeatureStore.from_url(url, Keys(f"t{uuid.uuid4().hex[:8]}"),
                                       dedup_horizon_days=1.0, retention_days=1.0)
    try:
        assert await store.drift_reports(["1h", "1d"]) == {"1h": [], "1d": []}
        # one call may close several windows of each length, oldest first (the engine's order)
        await store.keep_drift_reports([("1h", b"h1"), ("1d", b"d1"), ("1h", b"h2")], keep=3)
        await store.keep_drift_reports([("1h", b"h3"), ("1h", b"h4")], keep=3)
        assert await store.drift_reports(["1h", "1d"]) == {"1h": [b"h4", b"h3", b"h2"], "1d": [b"d1"]}
    finally:
        await store.close()

