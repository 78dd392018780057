"""Erasure racing a batch: another worker (or ``streamseg forget``) erases a customer
between this worker's feature update and its membership write. The customer must
not come back, and the compacted topic must end on a tombstone. Real Valkey."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.events.models import ClickEvent
from streamseg.features.keys import Keys
from streamseg.features.registry import DAY_MS
from streamseg.features.store import Membership, MembershipWrite, RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.settings import Settings
from tests.support import Recorder

from .engine_support import store_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01


def click(cid: str, n: int) -> ClickEvent:
    return ClickEvent.model_validate({"event_id": f"{cid}-{n}", "customer_id": cid,
                                      "ts": T0 + int(n * DAY_MS / 10), "type": "page_view",
                                      "session_id": f"{cid}-s{n}"})


class ErasedMidBatch(RedisFeatureStore):
    """The real store; ``victim`` is erased just before the batch's membership write."""

    victim = ""

    async def write_memberships(self, changes: Sequence[Membership]) -> MembershipWrite:
        if any(m.customer_id == self.victim for m in changes):
            await self.forget(self.victim)  # as another worker's DELETE /v1/customers/{id} would
        return await super().write_memberships(changes)


async def test_write_memberships__skips_customers_erased_meanwhile(settings: Settings) -> None:
    store = store_for(settings)
    keys = Keys(settings.key_prefix)
    try:
        await store.apply([click("kept", 1), click("erased", 1)])
        await store.forget("erased")
        gone = await store.write_memberships([Membership("kept", 2, None, 0.5, 1, "x", b"[]"),
                                              Membership("erased", 3, None, 0.5, 1, "y", b"[]")])
        assert gone.erased == ["erased"] and gone.raced == {}
        assert not await store.client.exists(keys.state("erased"))  # not revived as a bare segment
        assert (await store.state("kept"))["seg"] == 2.0
        assert await store.segment_sizes() == {2: 1}  # the erased one is not counted

        moved = await store.write_memberships([Membership("kept", 4, 2, 0.5, 1, "z", b"[]")])
        assert moved == MembershipWrite() and await store.segment_sizes() == {2: 0, 4: 1}
    finally:
        await store.close()


async def test_two_writers_first_assigning_one_customer__count_it_once_and_report_the_race(
        settings: Settings) -> None:
    """Two workers both saw no segment (held back, or a producer split the customer's events)."""
    store = store_for(settings)
    try:
        await store.apply([click("both", 1)])
        first = await store.write_memberships([Membership("both", 0, None, 0.5, 1, "x", b"[]")])
        second = await store.write_memberships([Membership("both", 1, None, 0.7, 1, "y", b"[]")])
        assert first == MembershipWrite()
        assert second.raced == {"both": 0}  # it believed "no segment"; segment 0 was stored
        assert await store.segment_sizes() == {0: 0, 1: 1}  # one customer, counted once
        same = await store.write_memberships([Membership("both", 1, None, 0.7, 1, "y", b"[]")])
        assert same.raced == {"both": 1} and await store.segment_sizes() == {0: 0, 1: 1}
    finally:
        await store.close()


async def test_engine__republishes_the_tombstone_when_a_customer_is_erased_mid_batch(
    settings: Settings,
) -> None:
    cfg = settings.model_copy(update={"model_warmup": 2})
    store = store_for(cfg, ErasedMidBatch)
    assert isinstance(store, ErasedMidBatch)
    store.victim = "c3"
    publisher = Recorder()
    engine = Engine(cfg, store, build_segmenter(cfg), publisher, Metrics(CollectorRegistry()))
    body = [orjson.dumps(click(f"c{i % 6}", i).model_dump(by_alias=True)) for i in range(24)]
    try:
        await engine.process([InMessage(cfg.topic_clickstream, 0, i, None, b) for i, b in enumerate(body)])
        victim = [v for t, k, v in publisher.records if t == cfg.topic_segment_updates and k == b"c3"]
        assert victim and victim[0] is not None  # its update went out before the erasure was seen
        assert victim[-1] is None  # and the topic ends on a tombstone for it
        assert not await store.client.exists(Keys(cfg.key_prefix).state("c3"))
        others = {k for t, k, v in publisher.records if t == cfg.topic_segment_updates and v is None}
        assert others == {b"c3"}
        assert (await store.state("c1"))["seg"] is not None
    finally:
        await store.close()
