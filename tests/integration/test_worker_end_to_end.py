"""Events in through the real broker -> features in real Valkey -> segment updates out."""

from __future__ import annotations

import time

import orjson
import pytest

from streamseg.publish.records import SegmentUpdate
from streamseg.settings import Settings

from .conftest import WorkerProcess, consume, produce

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
DAY = 86_400_000


def click(i: int, cid: str, typ: str = "product_view", ts: int | None = None) -> bytes:
    return orjson.dumps({"event_id": f"{cid}-c{i}", "customer_id": cid,
                         "ts": ts or NOW_MS - DAY * 30 + i * 60_000, "type": typ,
                         "session_id": f"{cid}-s{i // 5}", "device": "web", "channel": "seo",
                         "category": "shoes", "product_id": f"p{i}"})


def order(i: int, cid: str, amount: float, discount: float = 0.0) -> bytes:
    return orjson.dumps({"event_id": f"{cid}-o{i}", "customer_id": cid,
                         "ts": NOW_MS - DAY * 30 + i * 3_600_000, "amount": amount,
                         "currency": "EUR", "items": 2, "categories": ["shoes"],
                         "discount_amount": discount, "refund": False})


def workload(settings: Settings, customers: int = 60) -> list[tuple[str, bytes, bytes]]:
    recs = []
    for c in range(customers):
        cid = f"c{c:04d}"
        group = c % 3
        for i in range(5 + 10 * (group == 1)):
            recs.append((settings.topic_clickstream, cid.encode(), click(i, cid)))
        for i in range(1 + 5 * (group == 0)):
            recs.append((settings.topic_transactions, cid.encode(),
                         order(i, cid, 300.0 if group == 0 else 20.0, 15.0 if group == 2 else 0.0)))
    return recs


async def test_generated_events__produce_segment_updates_with_the_documented_schema(
    settings: Settings, worker: WorkerProcess
) -> None:
    recs = workload(settings)
    await produce(settings, recs)
    updates = await consume(settings, settings.topic_segment_updates, until=60, timeout=90)
    assert len({u["key"] for u in updates}) == 60, worker.log()[-3000:]
    for u in updates:
        rec = SegmentUpdate.model_validate(u["value"])  # exactly the documented fields
        assert set(u["value"]) == set(SegmentUpdate.model_fields)
        assert u["key"] == rec.customer_id.encode()
        assert 0 <= rec.segment_id < settings.n_segments
        assert rec.model_version >= 1 and rec.distance >= 0 and rec.segment_name
    firsts = [u["value"] for u in updates if u["value"]["previous_segment_id"] is None]
    assert len({f["customer_id"] for f in firsts}) == 60
