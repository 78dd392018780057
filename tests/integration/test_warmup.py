"""A small shop gets segments: 60 customers, 1,000 events, far below the 500-update warm-up.

Until the first model exists, /readyz (worker and ``streamseg api``), customer
lookups, ``streamseg inspect`` and the dev view say "warming up: N of M".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from streamseg.cli import inspect
from streamseg.devstack import DevStack, free_port
from streamseg.devstack.dev import Snapshot, render, warmup_progress
from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.features.keys import Keys
from streamseg.metrics import Metrics
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.openapi_check import assert_matches_openapi
from tests.support import Recorder, wait_until

from .conftest import WorkerProcess, consume, produce, unique_settings
from .engine_support import store_for
from .test_worker_end_to_end import click, order, planted_group

pytestmark = pytest.mark.integration

CUSTOMERS = 60
EVENTS = 1000
TOKEN = "warmup-test-token-0123456789"
Record = tuple[str, bytes, bytes]


def small_shop(settings: Settings) -> list[Record]:
    """60 customers of three behaviours, 1,000 events, produced customer by customer."""
    recs: list[Record] = []
    for c in range(CUSTOMERS):
        cid = f"c{c:04d}"
        n = EVENTS // CUSTOMERS + (c < EVENTS % CUSTOMERS)
        group = planted_group(cid)
        orders = {0: 6, 1: 1, 2: 2}[group]
        for i in range(orders):
            recs.append((settings.topic_transactions, cid.encode(),
                         order(i, cid, 300.0 if group == 0 else 20.0, 15.0 if group == 2 else 0.0)))
        for i in range(n - orders):
            recs.append((settings.topic_clickstream, cid.encode(), click(i, cid)))
    assert len(recs) == EVENTS
    return recs


def shop_settings(stack: DevStack, **overrides: object) -> Settings:
    """Six segments and the default 500-update warm-up: 1,000 events of 60 customers are far
    fewer learned updates, so only the early seeding (10 customers per segment) gives a model."""
    return unique_settings(stack, n_segments=6, model_warmup=500, model_warmup_per_segment=10,
                           **overrides)


def messages(records: list[Record], first_offset: int = 0) -> list[InMessage]:
    return [InMessage(topic, 0, first_offset + i, key, value)
            for i, (topic, key, value) in enumerate(records)]


async def test_in_process__first_model_once_60_customers_and_the_bounded_time_not_before(
        stack: DevStack) -> None:
    settings = shop_settings(stack, model_warmup_s=30.0)
    recs = small_shop(settings)
    half = next(i for i, (_, key, _) in enumerate(recs) if key == b"c0030")
    wall = [1_800_000_000_000.0]
    store, out = store_for(settings), Recorder()
    engine = Engine(settings, store, build_segmenter(settings), out, Metrics(CollectorRegistry()),
                    wall_ms=lambda: wall[0])
    try:
        for i in range(0, half, 100):
            await engine.process(messages(recs[i:min(i + 100, half)], i))
        wall[0] += 3_600_000.0  # an hour later: only 30 distinct customers, so still no model
        assert await engine.flush_pending() == 0 and engine.assigner.model is None
        assert engine.warmup.text().startswith("warming up: 30 of 60 customers seen")
        for i in range(half, len(recs), 100):
            await engine.process(messages(recs[i:i + 100], i))
        assert engine.assigner.model is None  # 60 customers, but far fewer than 500 updates
        assert await engine.flush_pending() == CUSTOMERS  # the timer's tick seeds and assigns
    finally:
        await store.close()
    first = {orjson.loads(v)["customer_id"] for t, _, v in out.records
             if t == settings.topic_segment_updates}
    assert first == {f"c{c:04d}" for c in range(CUSTOMERS)}
    assert engine.local.segmenter.learned < settings.model_warmup  # type: ignore[attr-defined]
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        assert not await redis.scard(Keys(settings.key_prefix).held())
    finally:
        await redis.aclose()


async def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=aiohttp.ClientTimeout(10)) as resp:
        return resp.status, await resp.json()


async def test_worker__says_warming_up_n_of_m_then_gives_every_customer_a_segment(
        stack: DevStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = shop_settings(stack, model_warmup_s=2.0, api_tokens=f"ops:{TOKEN}",
                             api_port=free_port())
    await ensure_topics(settings)
    recs = small_shop(settings)
    half = next(i for i, (_, key, _) in enumerate(recs) if key == b"c0030")
    worker = WorkerProcess(settings, tmp_path).start()
    api = WorkerProcess(settings, tmp_path, name="api", command="api", port=settings.api_port)
    try:
        api.start()
        await produce(settings, recs[:half])  # 30 customers: half of what six segments need
        want = "warming up: 30 of 60 customers seen (the first model needs 60 distinct customers)"
        for port in (settings.web_port, settings.api_port):
            seen: list[Any] = []

            async def says(port: int = port, seen: list[Any] = seen) -> bool:
                seen[:] = await get(port, "/readyz")
                return bool(seen[1].get("warming_up") == want)

            await wait_until(says, 30, lambda seen=seen: f"/readyz to say {want!r}; it said {seen}")
            assert seen[0] == 503 and seen[1]["checks"]["model"] is False
            assert_matches_openapi("/readyz", "get", 503, seen[1])
            status, body = await get(port, "/v1/customers/c0000")
            assert status == 200 and (body["segment_id"], body["warming_up"]) == (None, want)
            assert_matches_openapi("/v1/customers/{customer_id}", "get", 200, body)
        assert await inspect(settings, "c0000") == 0
        assert json.loads(capsys.readouterr().out)["warming_up"] == want
        dev_line = await warmup_progress(settings)
        assert dev_line == want and want in render(Snapshot(at=0.0), 0.0, (0.0, 0), 1.0, False,
                                                   warming=dev_line)

        await produce(settings, recs[half:])  # the other 30: 60 customers, 1,000 events in all
        updates = await consume(settings, settings.topic_segment_updates, until=CUSTOMERS,
                                timeout=60)
        assert {u["key"] for u in updates} == {f"c{c:04d}".encode() for c in range(CUSTOMERS)}, \
            worker.log()[-3000:]
        firsts = {u["key"] for u in updates if u["value"]["previous_segment_id"] is None}
        assert len(firsts) == CUSTOMERS
        last: list[Any] = []

        async def assigned() -> bool:  # published first, then written to Redis
            last[:] = await get(settings.web_port, "/v1/customers/c0000")
            return last[1]["segment_id"] is not None
        await wait_until(assigned, 10, lambda: f"c0000's membership in the lookup: {last}")
        assert last[1]["warming_up"] is None
        assert (await get(settings.web_port, "/readyz"))[1]["warming_up"] is None
        assert "first model seeded early: 60 distinct customers seen" in worker.log()
    finally:
        api.stop()
        worker.stop()
