"""The store's lean hash reads (hiredis on one connection) against real Valkey: the same
answers as redis-py, and failures that surface as redis-py errors and heal by reconnecting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamseg.devstack import free_port
from streamseg.errors import StoreRefused
from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.features.fastread import HashReader
from streamseg.features.keys import Keys
from streamseg.features.store import Membership, RedisFeatureStore
from streamseg.settings import Settings

pytestmark = pytest.mark.integration

STATE = {"first_ts": 1.7e12, "last_ts": 1.7e12 + 5e8, "seg": 2, "seg_dist": 0.25, "n_events": 7,
         "seg_why": '[{"feature": "monetary_30d", "value": 90.0, "previous_mean": null, "new_mean": 80.0}]'}


def stores(settings: Settings) -> tuple[RedisFeatureStore, RedisFeatureStore]:
    """The store as built from a URL (lean reads) and the same store reading through redis-py."""
    lean = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                      dedup_horizon_days=30, retention_days=90)
    plain = RedisFeatureStore(aioredis.Redis.from_url(settings.redis_url), Keys(settings.key_prefix),
                              dedup_horizon_days=30, retention_days=90)
    assert lean.hashes is not None and plain.hashes is None
    return lean, plain


@pytest.fixture
async def seeded(settings: Settings, redis_client: aioredis.Redis) -> AsyncIterator[Settings]:
    keys = Keys(settings.key_prefix)
    for i in range(250):  # more than one sampling chunk
        await redis_client.hset(keys.state(f"c{i}"), mapping={**STATE, "n_events": i})
    yield settings


async def test_states_and_samples_read_what_redis_py_reads(seeded: Settings) -> None:
    lean, plain = stores(seeded)
    ids = ["c0", "nobody", "c2", "c1", "c0"]
    try:
        got, want = await lean.states(ids), await plain.states(ids)
        assert got == want and got[1] == {} and got[2]["n_events"] == 2.0
        assert isinstance(got[0]["seg_why"], str)
        assert await lean.states(["c7"]) == await plain.states(["c7"]) == [await plain.state("c7")]
        sample, reference = await lean.sample_states(10_000), await plain.sample_states(10_000)
        key = lambda s: s["n_events"]  # noqa: E731
        assert sorted(sample, key=key) == sorted(reference, key=key)
        assert sorted(s["n_events"] for s in sample) == [float(i) for i in range(250)]
        # in the order of the customers' keys, not SCAN's (which depends on the whole database):
        # the fits that read a sample seed their choices by row
        keys = Keys(seeded.key_prefix)
        in_key_order = [float(i) for i in sorted(range(250), key=lambda i: keys.state(f"c{i}"))]
        assert [s["n_events"] for s in sample] == [s["n_events"] for s in reference] == in_key_order
        assert len(await lean.sample_states(120)) == 120
    finally:
        await lean.close()
        await plain.close()


async def test_reconnects_after_the_server_drops_the_connection(
    seeded: Settings, redis_client: aioredis.Redis,
) -> None:
    lean, _ = stores(seeded)
    try:
        assert (await lean.states(["c1"]))[0]["n_events"] == 1.0
        killed = await redis_client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        await asyncio.sleep(0.1)  # the close reaches the reader
        assert (await lean.states(["c1"]))[0]["n_events"] == 1.0  # on a fresh connection
    finally:
        await lean.close()


async def test_authenticates_and_selects_the_database_of_the_url(
    settings: Settings, redis_client: aioredis.Redis,
) -> None:
    user, secret = f"lookup-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis_client.execute_command("ACL", "SETUSER", user, "on", f">{secret}", "~*", "+@all")
    key = Keys(settings.key_prefix).state("only-in-3").encode()
    host = urlsplit(settings.redis_url).netloc
    db3 = aioredis.Redis.from_url(f"redis://{host}/3")
    try:
        await db3.hset(key, mapping=STATE)
        assert not await redis_client.exists(key)  # not in the default database
        r = HashReader(f"redis://{user}:{secret}@{host}/3")
        try:
            (flat,) = await r.hgetall([key])
            assert dict(zip(flat[::2], flat[1::2], strict=True))[b"seg"] == b"2"
        finally:
            await r.close()
        wrong = HashReader(f"redis://{user}:not-the-secret@{host}/3")
        with pytest.raises(AuthenticationError):  # as redis-py classes it: a refusal, no outage
            await wrong.hgetall([key])
        await wrong.close()
    finally:
        await db3.delete(key)
        await db3.aclose()
        await redis_client.execute_command("ACL", "DELUSER", user)


async def test_unreachable_server_is_a_connection_error() -> None:
    r = HashReader(f"redis://127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(RedisConnectionError):
        await r.hgetall([b"k"])


async def test_a_server_that_stops_answering_times_out_and_the_next_read_reconnects() -> None:
    """A server that accepts and never answers (a hung Redis is hard to make on demand)."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        connections.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r = HashReader(f"redis://127.0.0.1:{port}", timeout=0.2)
    try:
        with pytest.raises(RedisTimeoutError):
            await r.hgetall([b"k"])
        with pytest.raises(RedisTimeoutError):
            await r.hgetall([b"k"])
        assert len(connections) == 2  # the first connection was given up, not reused
    finally:
        await r.close()
        server.close()
        for w in connections:
            w.close()


# -- the batch writes (apply_events.lua per customer) over the same connection --------------

def _batch() -> list[Event]:
    """Orders and clicks of three customers, one event repeated (a duplicate), a non-ASCII id."""
    order = {"event_id": "o1", "customer_id": "c1", "ts": 1_767_225_600_000, "amount": 12.5,
             "currency": "EUR", "items": 2, "categories": ["shoes", "bags"]}
    click = {"event_id": "k1", "customer_id": "cé2", "ts": 1_767_225_660_000, "type": "search",
             "session_id": "s1"}
    return [TransactionEvent.model_validate(order), ClickEvent.model_validate(click),
            TransactionEvent.model_validate({**order, "event_id": "o2", "customer_id": "c3",
                                             "refund": True, "ts": 1_767_225_700_000}),
            ClickEvent.model_validate({**click, "event_id": "k2", "type": "login"}),
            TransactionEvent.model_validate(order)]


async def test_batch_and_membership_writes_store_and_answer_what_redis_py_does(
    settings: Settings, redis_client: aioredis.Redis,
) -> None:
    lean, _ = stores(settings)
    plain = RedisFeatureStore(aioredis.Redis.from_url(settings.redis_url),
                              Keys(settings.key_prefix + "-plain"), dedup_horizon_days=30, retention_days=90)
    assert lean.lean_writes is not None and plain.lean_writes is None
    try:
        answers = []
        for store in (lean, plain):
            first, again = await store.apply(_batch()), await store.apply(_batch())
            assert [u.statuses for u in first.values()] == [["applied", "duplicate"],
                                                            ["applied", "applied"], ["applied"]]
            assert [u.statuses for u in again.values()] == [["duplicate"] * 2] * 2 + [["duplicate"]]
            moved = [Membership("c1", 2, None, 0.25, 1, "two", b"[]", "high", 1_767_225_600_000, "x"),
                     Membership("c3", 1, 4, 1.5, 1, "one"),  # raced: none stored
                     Membership("gone", 1, None, 1.0, 1, "one")]  # erased: no state
            written = await store.write_memberships(moved)
            assert (written.erased, written.raced) == (["gone"], {"c3": None})
            answers.append([(cid, u.statuses, u.state) for cid, u in first.items()])
        assert answers[0] == answers[1]
        for cid in ("c1", "c3"):
            assert await redis_client.lrange(lean.keys.history(cid), 0, -1) == \
                await redis_client.lrange(plain.keys.history(cid), 0, -1)
        for cid in ("c1", "cé2", "c3"):
            assert await redis_client.hgetall(lean.keys.state(cid)) == \
                await redis_client.hgetall(plain.keys.state(cid))
            assert await redis_client.zrange(lean.keys.seen(cid), 0, -1, withscores=True) == \
                await redis_client.zrange(plain.keys.seen(cid), 0, -1, withscores=True)
            assert await redis_client.zscore(lean.placement.scored(cid), cid) == \
                await redis_client.zscore(plain.placement.scored(cid), cid)
        assert await redis_client.zscore(lean.placement.scored("cé2"), "cé2") == 1_767_225_660_000
    finally:
        await lean.close()
        await plain.close()


async def test_batch_writes_load_a_flushed_script_again(settings: Settings,
                                                        redis_client: aioredis.Redis) -> None:
    lean, _ = stores(settings)
    try:
        await lean.apply(_batch()[:1])
        await redis_client.script_flush()
        updates = await lean.apply(_batch()[1:2])
        assert updates["cé2"].statuses == ["applied"]
        await redis_client.script_flush()
        written = await lean.write_memberships([Membership("cé2", 3, None, 0.5, 1, "three")])
        assert (written.erased, written.raced) == ([], {})
        assert await redis_client.hget(lean.keys.state("cé2"), "seg") == b"3"
    finally:
        await lean.close()


async def test_batch_writes_refused_by_the_acl_are_a_refusal(settings: Settings,
                                                             redis_client: aioredis.Redis) -> None:
    user, secret = f"noscript-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis_client.execute_command("ACL", "SETUSER", user, "on", f">{secret}", "~*", "+@all",
                                       "-evalsha", "-eval")
    host = urlsplit(settings.redis_url).netloc
    store = RedisFeatureStore.from_url(f"redis://{user}:{secret}@{host}", Keys(settings.key_prefix),
                                       dedup_horizon_days=30, retention_days=90)
    assert store.lean_writes is not None
    try:
        store._sha = "0" * 40  # loading it is not the call under test
        with pytest.raises(StoreRefused, match="ACL"):
            await store.apply(_batch())
    finally:
        await store.close()
        await redis_client.execute_command("ACL", "DELUSER", user)
