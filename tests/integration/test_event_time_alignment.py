"""A backlog on two input topics is handed over in event-time order (streamseg/alignment.py).

Clicks are many, orders few: with a small fetch size each fetch carries ~10x more event time
of orders than of clicks, so without alignment the orders of the whole backlog run far
ahead of the clicks they came with.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamseg.devstack import ManagedProcess
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.support import wait_until

from .conftest import settings_env, unique_settings

pytestmark = pytest.mark.integration

#: one click a second, one order every five seconds: the orders' partition runs far enough
#: ahead to hold more than HOLD_PER_PARTITION records, so it is paused and resumed too
CLICKS, ORDERS = 20_000, 4_000
T0_MS = 1_700_000_000_000


async def test_backlog_of_two_topics__is_handed_over_in_event_time_order(stack, tmp_path: Path) -> None:
    # one partition per topic (each in its own order), and the smallest fetch allowed
    settings: Settings = unique_settings(stack, topic_partitions=1, fetch_partition_bytes=64 * 1024)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list, linger_ms=5)
    await producer.start()
    try:
        pad = "x" * 200  # ~250-byte records, as the generator's
        for i in range(CLICKS):
            producer_send = producer.send(settings.topic_clickstream, orjson.dumps({"i": i, "pad": pad}),
                                          timestamp_ms=T0_MS + i * 1000)
            await producer_send
            if i % 5 == 0:
                await producer.send(settings.topic_transactions, orjson.dumps({"i": i, "pad": pad}),
                                    timestamp_ms=T0_MS + i * 1000)
        await producer.flush()
    finally:
        await producer.stop()

    out = tmp_path / "order.jsonl"
    reader = ManagedProcess("order_reader", [sys.executable, "-m", "tests.integration.order_reader", str(out)],
                            tmp_path / "order_reader.log", settings_env(settings)).start()
    try:
        def handed() -> list[list[tuple[str, int]]]:
            # whole lines only: the reader may be writing the last one
            lines = out.read_bytes().split(b"\n")[:-1] if out.exists() else []
            return [orjson.loads(line) for line in lines]

        await wait_until(lambda: sum(map(len, handed())) >= CLICKS + ORDERS, 120,
                         lambda: "every record handed over\n" + reader.log_path.read_text()[-3000:])
    finally:
        reader.stop()
    batches = handed()
    records = [r for b in batches for r in b]
    assert len(records) == CLICKS + ORDERS, "each record once"
    assert sum(t == settings.topic_transactions for t, _ in records) == ORDERS
    times = [ms for _, ms in records]
    late = [(i, times[i - 1], ms) for i, ms in enumerate(times) if i and ms < times[i - 1]]
    assert "input partitions paused" in reader.log_path.read_text(), "the orders were never paused"
    assert not late, (f"{len(late)} records handed over after a later one, over {len(batches)} batches; "
                      f"first: {late[:3]}")
