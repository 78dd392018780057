"""Message keys against ``customer_id`` through a real worker (docs/user-guide.md#input-topics).

A single-event message whose key is set and names another customer is applied
to the customer its ``customer_id`` names and counted
(``streamseg_key_mismatches_total``): nothing is lost, and the operator sees
that the producer breaks per-customer ordering. Null-key envelopes of many
customers (what collectors send) are applied element by element and are not
counted as mismatches.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from streamseg.devstack import DevStack
from streamseg.topics import ensure_topics

from .conftest import unique_settings
from .streams import (
    Record,
    assert_features_match_reference,
    events_seen,
    make_workload,
    metric,
    produce_tracked,
    read_topic,
    running,
    start_worker,
    wait_drained,
)

pytestmark = pytest.mark.integration


async def test_mismatched_keys_are_applied_and_counted__null_key_envelopes_are_not(
    stack: DevStack, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    # one partition: re-keyed records keep their place in each customer's order
    settings = unique_settings(stack, topic_partitions=1)
    await ensure_topics(settings)
    wl = make_workload(settings, customers=20, seed=5)
    records: list[Record] = []
    rekeyed = enveloped = 0
    pending: list[bytes] = []  # clicks gathered into null-key envelopes of 5
    for topic, key, value in wl.records:
        if topic == settings.topic_clickstream and len(records) % 7 == 0:
            records.append((topic, b"someone-else", value))  # key set, names another customer
            rekeyed += 1
        elif topic == settings.topic_clickstream and len(records) % 7 == 3:
            pending.append(value)
            if len(pending) == 5:
                records.append((topic, None, b"[" + b",".join(pending) + b"]"))
                enveloped += len(pending)
                pending = []
        else:
            records.append((topic, key, value))
    for value in pending:
        records.append((settings.topic_clickstream, None, value))
    assert rekeyed > 10 and enveloped > 10

    worker = start_worker(settings, tmp_path, "worker")
    with running(worker):
        await produce_tracked(settings, records)
        await wait_drained(settings, len(records), [worker])
        assert events_seen(settings.web_port, "processed") == sum(map(len, wl.events.values()))
        assert metric(settings.web_port, "streamseg_key_mismatches_total",
                      topic=settings.topic_clickstream) == rekeyed
        assert metric(settings.web_port, "streamseg_dead_letters_total") == 0
    assert not await read_topic(settings, settings.topic_dlq)
    await assert_features_match_reference(settings, redis_client, wl)  # each applied once
