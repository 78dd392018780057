"""DELETE /v1/customers/{id} when the broker cannot take the erasure's records, on the real
broker and Valkey, through the stand-alone API (``streamseg api``'s application).

- A broker that does not answer is found before anything is erased: 503, Redis untouched.
- A broker that answers but refuses the audit record (a topic whose ``max.message.bytes``
  is below the record's size: a refusal a real broker gives) fails the erasure after
  Redis was cleared; the retry, once the broker takes the record, publishes an audit
  record that still says what was removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streamseg.api.server import build
from streamseg.devstack import DevStack, free_port
from streamseg.events.models import TransactionEvent
from streamseg.features.keys import Keys
from streamseg.features.store import Membership, RedisFeatureStore
from streamseg.settings import Settings
from streamseg.topics import ensure_topics

from .conftest import consume, unique_settings

pytestmark = pytest.mark.integration

TOKEN = "ops-token-0123456789abcdef"
CID = "c-erase"
SEGMENT = 2


async def stored_customer(settings: Settings) -> list[str]:
    """A customer with features, seen ids, a membership and its history, as a worker leaves
    one; its keys."""
    keys = Keys(settings.key_prefix)
    store = RedisFeatureStore.from_url(settings.redis_url, keys, dedup_horizon_days=30,
                                       retention_days=30)
    try:
        await store.apply([TransactionEvent.model_validate(
            {"event_id": "o-1", "customer_id": CID, "ts": 1_767_225_600_000, "amount": 12.0,
             "currency": "EUR"})])
        await store.write_memberships([Membership(CID, SEGMENT, None, 0.5, 1, "Segment 2")])
    finally:
        await store.close()
    return sorted([keys.state(CID), keys.seen(CID), keys.history(CID)])


@pytest.fixture
async def redis_client(stack: DevStack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


async def delete(settings: Settings) -> tuple[int, dict]:
    async with TestClient(TestServer(build(settings))) as http:
        resp = await http.delete(f"/v1/customers/{CID}", headers={"Authorization": f"Bearer {TOKEN}"})
        return resp.status, await resp.json()


async def test_delete__with_no_broker_answering__erases_nothing(
    stack: DevStack, redis_client: aioredis.Redis
) -> None:
    settings = unique_settings(stack, api_tokens=f"ops:{TOKEN}")
    keys = await stored_customer(settings)
    away = settings.replace(kafka_bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there

    status, body = await delete(away)
    assert status == 503 and body["error"]["code"] == "broker_unavailable", body
    assert "nothing was erased" in body["error"]["message"]
    assert await redis_client.exists(*keys) == 3
    sizes = await redis_client.hgetall(Keys(settings.key_prefix).segment_sizes())
    assert sizes == {str(SEGMENT).encode(): b"1"}


async def test_delete_retried_after_the_broker_refused_the_audit__audits_what_was_removed(
    stack: DevStack, redis_client: aioredis.Redis
) -> None:
    settings = unique_settings(stack, api_tokens=f"ops:{TOKEN}")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic_audit, 1, 1,
                                            topic_configs={"max.message.bytes": "100"})])
        await ensure_topics(settings)
        keys = await stored_customer(settings)

        status, body = await delete(settings)  # the broker refuses the audit record as too large
        assert status == 503 and body["error"]["code"] == "erasure_incomplete", body
        assert await redis_client.exists(*keys) == 0

        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic_audit,
                                                  configs={"max.message.bytes": "1048588"})])
        status, audit = await delete(settings)
    finally:
        await admin.close()
    assert status == 200, audit
    assert (sorted(audit["removed_keys"]), audit["had_membership"], audit["segment_id"]) == (
        keys, True, SEGMENT)
    published = await consume(settings, settings.topic_audit, until=1, timeout=30, settle=0.5)
    assert [a["value"] for a in published] == [audit]
    sizes = await redis_client.hgetall(Keys(settings.key_prefix).segment_sizes())
    assert sizes == {str(SEGMENT).encode(): b"0"}  # decremented once, not twice

    status, again = await delete(settings)  # a third erasure: nothing was left to remove
    assert status == 200 and (again["removed_keys"], again["had_membership"]) == ([], False)
