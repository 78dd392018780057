"""The API's lean state reader against real Valkey: same answers as the store, and failures
that surface as redis-py errors and heal by reconnecting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamseg.api.fastread import StateReader
from streamseg.devstack import free_port
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.settings import Settings

pytestmark = pytest.mark.integration

STATE = {"first_ts": 1.7e12, "last_ts": 1.7e12 + 5e8, "seg": 2, "seg_dist": 0.25, "n_events": 7,
         "seg_why": '[{"feature": "monetary_30d", "value": 90.0, "previous_mean": null, "new_mean": 80.0}]'}


@pytest.fixture
async def reader(settings: Settings, redis_client: aioredis.Redis) -> AsyncIterator[StateReader]:
    keys = Keys(settings.key_prefix)
    for i in range(3):
        await redis_client.hset(keys.state(f"c{i}"), mapping={**STATE, "n_events": i})
    r = StateReader(settings.redis_url, keys)
    yield r
    await r.close()


async def test_reads_what_the_store_reads_in_one_pipelined_batch(
    settings: Settings, reader: StateReader,
) -> None:
    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=30, retention_days=90)
    ids = ["c0", "nobody", "c2", "c1", "c0"]
    try:
        want = await store.states(ids)
    finally:
        await store.close()
    got = await reader.states(ids)
    assert got == want
    assert got[1] == {} and got[2]["n_events"] == 2.0 and isinstance(got[0]["seg_why"], str)
    assert [s for s in await reader.states(["c1"])] == [want[3]]


async def test_reconnects_after_the_server_drops_the_connection(
    reader: StateReader, redis_client: aioredis.Redis,
) -> None:
    assert (await reader.states(["c1"]))[0]["n_events"] == 1.0
    killed = await redis_client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert killed >= 1
    await asyncio.sleep(0.1)  # the close reaches the reader
    assert (await reader.states(["c1"]))[0]["n_events"] == 1.0  # a fresh connection


async def test_authenticates_and_selects_the_database_of_the_url(
    settings: Settings, redis_client: aioredis.Redis,
) -> None:
    user, secret = f"lookup-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis_client.execute_command("ACL", "SETUSER", user, "on", f">{secret}", "~*", "+@all")
    keys = Keys(settings.key_prefix)
    host = urlsplit(settings.redis_url).netloc
    db3 = aioredis.Redis.from_url(f"redis://{host}/3")
    try:
        await db3.hset(keys.state("only-in-3"), mapping=STATE)
        assert not await redis_client.exists(keys.state("only-in-3"))  # not in the default db
        r = StateReader(f"redis://{user}:{secret}@{host}/3", keys)
        try:
            assert (await r.states(["only-in-3"]))[0]["seg"] == 2.0
        finally:
            await r.close()
        wrong = StateReader(f"redis://{user}:not-the-secret@{host}/3", keys)
        with pytest.raises(ResponseError):
            await wrong.states(["only-in-3"])
        await wrong.close()
    finally:
        await db3.delete(keys.state("only-in-3"))
        await db3.aclose()
        await redis_client.execute_command("ACL", "DELUSER", user)


async def test_unreachable_server_is_a_connection_error() -> None:
    r = StateReader(f"redis://127.0.0.1:{free_port()}", Keys("x"), timeout=1.0)
    with pytest.raises(RedisConnectionError):
        await r.states(["c1"])


async def test_a_server_that_stops_answering_times_out_and_the_next_read_reconnects() -> None:
    """A server that accepts and never answers (a hung Redis is hard to make on demand)."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        connections.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r = StateReader(f"redis://127.0.0.1:{port}", Keys("x"), timeout=0.2)
    try:
        with pytest.raises(RedisTimeoutError):
            await r.states(["c1"])
        with pytest.raises(RedisTimeoutError):
            await r.states(["c1"])
        assert len(connections) == 2  # the first connection was given up, not reused
    finally:
        await r.close()
        server.close()
        for w in connections:
            w.close()
