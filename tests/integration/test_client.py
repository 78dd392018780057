"""The subscriber client on the real broker: typed items, tombstones, resume, redelivery."""

from __future__ import annotations

import uuid

import pytest

from streamseg.client import SegmentSubscriber, Tombstone
from streamseg.publish.records import CatalogEntry, SegmentUpdate
from streamseg.settings import Settings
from streamseg.topics import ensure_topics

from .conftest import produce

pytestmark = pytest.mark.integration


def update(i: int) -> SegmentUpdate:
    return SegmentUpdate(customer_id=f"c{i}", segment_id=i % 3, segment_name=f"Segment {i % 3}",
                         previous_segment_id=None, distance=0.5, model_version=1,
                         event_ts="2026-01-01T00:00:00.000Z", processed_ts="2026-01-01T00:00:00.004Z")


def entry(sid: int) -> CatalogEntry:
    return CatalogEntry(segment_id=sid, status="born", model_version=1, name=f"Segment {sid}",
                        profile=None, related=[], updated_ts="2026-01-01T00:00:00.000Z")


async def take(sub: SegmentSubscriber, n: int) -> list[object]:
    out: list[object] = []
    async for item in sub:
        out.append(item)
        if len(out) == n:
            break
    return out


async def test_subscriber__yields_typed_updates_catalog_entries_and_tombstones_skipping_garbage(
    settings: Settings,
) -> None:
    await ensure_topics(settings)
    await produce(settings, [
        (settings.topic_segment_updates, b"c1", update(1).to_bytes()),
        (settings.topic_segment_updates, b"c1", b'{"customer_id": "c1"}'),  # not a SegmentUpdate
        (settings.topic_segment_updates, b"c1", None),  # erased
        (settings.topic_segments, b"2", entry(2).to_bytes()),
        (settings.topic_segments, b"2", None),  # segment removed
    ])
    async with SegmentSubscriber.from_settings(settings, f"g-{uuid.uuid4().hex[:8]}") as sub:
        items = await take(sub, 4)
        assert sub.invalid == 1
    assert update(1) in items and entry(2) in items
    assert Tombstone(kind="customer", key="c1", topic=settings.topic_segment_updates) in items
    assert Tombstone(kind="segment", key="2", topic=settings.topic_segments) in items
    customer = [i for i in items if isinstance(i, SegmentUpdate)
                or (isinstance(i, Tombstone) and i.kind == "customer")]
    assert customer == [update(1), Tombstone(kind="customer", key="c1",
                                             topic=settings.topic_segment_updates)]  # key order kept


async def test_subscriber__resumes_after_the_last_handled_item_and_redelivers_an_unhandled_one(
    settings: Settings,
) -> None:
    await ensure_topics(settings)
    sent = [update(i) for i in range(12)]
    await produce(settings, [(settings.topic_segment_updates, u.customer_id.encode(), u.to_bytes())
                             for u in sent])
    group = f"g-{uuid.uuid4().hex[:8]}"

    def subscriber() -> SegmentSubscriber:
        # Tansu lets a rejoining group wait out the old member's session despite its LeaveGroup:
        # the broker's minimum session keeps that wait short
        return SegmentSubscriber(settings.kafka_bootstrap_list, group,
                                 updates_topic=settings.topic_segment_updates, catalog_topic=None,
                                 session_timeout_ms=6000)

    async with subscriber() as sub:  # handle 4, then stop cleanly
        first = await take(sub, 4)

    failed: object = None
    second: list[object] = []
    with pytest.raises(RuntimeError):
        async with subscriber() as sub:  # handle 3 more, then the handler fails on the next
            async for item in sub:
                if len(second) == 3:
                    failed = item
                    raise RuntimeError("handler crashed")
                second.append(item)

    async with subscriber() as sub:
        rest = await take(sub, len(sent) - 7)
    assert not set(map(id, first)) & set(map(id, second))
    assert sorted(u.customer_id for u in first + second + rest) == sorted(u.customer_id for u in sent)
    assert failed in rest  # the item whose handler raised comes again; nothing handled does
