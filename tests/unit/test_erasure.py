"""The erasure service's ordering and failure behaviour (Redis and Kafka parts are integration-tested)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streamseg.erasure import BrokerUnavailable, Eraser, ErasureIncomplete, InvalidCustomerId
from streamseg.features.store import Forgotten
from streamseg.settings import Settings
from tests.support import Recorder

SETTINGS = Settings()


class MemoryStore:
    def __init__(self) -> None:
        self.customers = {"c1": 4}
        self.calls: list[str] = []

    async def forget(self, customer_id: str) -> Forgotten:
        self.calls.append(customer_id)
        seg = self.customers.pop(customer_id, None)
        keys = [f"ss:{{{customer_id}}}:f"] if seg is not None else []
        return Forgotten(keys, seg)

    async def forget_done(self, customer_id: str) -> None:
        self.calls.append(f"done:{customer_id}")


async def test_erasure__publishes_tombstones_then_an_audit_record_naming_what_was_removed() -> None:
    store, pub, dropped = MemoryStore(), Recorder(), []
    eraser = Eraser(SETTINGS, store, pub, on_forget=dropped.append)
    audit = await eraser.forget("c1", actor="ops", via="http")
    assert (audit.had_membership, audit.segment_id, audit.removed_keys) == (True, 4, ["ss:{c1}:f"])
    assert dropped == ["c1"]
    assert pub.records[0] == (SETTINGS.topic_segment_updates, b"c1", None)  # the tombstone
    topic, key, value = pub.records[-1]
    assert (topic, key) == (SETTINGS.topic_audit, b"c1")
    assert orjson.loads(value or b"") == audit.model_dump()


async def test_erasing_twice__is_harmless_and_says_nothing_was_left() -> None:
    eraser = Eraser(SETTINGS, MemoryStore(), Recorder())
    await eraser.forget("c1", actor="ops", via="cli")
    again = await eraser.forget("c1", actor="ops", via="cli")
    assert (again.had_membership, again.removed_keys) == (False, [])
    assert again.tombstoned_topics == [SETTINGS.topic_segment_updates]  # tombstone re-sent anyway


class WatchedLock(asyncio.Lock):
    """A lock that says when someone starts waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()

    async def acquire(self) -> bool:
        self.asked.set()
        return await super().acquire()


async def test_erasure__waits_for_the_batch_holding_the_lock() -> None:
    lock, store = WatchedLock(), MemoryStore()
    eraser = Eraser(SETTINGS, store, Recorder(), lock=lock)
    async with lock:  # a batch in flight
        lock.asked.clear()  # our own acquire
        task = asyncio.create_task(eraser.forget("c1", actor="ops", via="http"))
        await asyncio.wait_for(lock.asked.wait(), 5)  # the erasure is parked on the lock now
        assert store.calls == [] and not task.done()
    await task
    assert store.calls == ["c1", "done:c1"]


async def test_kafka_failure__raises_erasure_incomplete_asking_for_a_retry() -> None:
    eraser = Eraser(SETTINGS, MemoryStore(), Recorder(fail=True))
    with pytest.raises(ErasureIncomplete, match="retry the erasure"):
        await eraser.forget("c1", actor="ops", via="http")


async def test_invalid_customer_id__is_refused_before_touching_anything() -> None:
    store = MemoryStore()
    for bad in ["", "x" * 129, "a\x00b"]:
        with pytest.raises(InvalidCustomerId):
            await Eraser(SETTINGS, store, Recorder()).forget(bad, actor="ops", via="cli")
    assert store.calls == []


async def test_preflight_refusal__leaves_the_store_untouched() -> None:
    store = MemoryStore()

    async def broker_away() -> None:
        raise BrokerUnavailable("no Kafka broker answered; nothing was erased, retry")

    with pytest.raises(BrokerUnavailable):
        await Eraser(SETTINGS, store, Recorder(), preflight=broker_away).forget(
            "c1", actor="ops", via="http")
    assert store.calls == [] and store.customers == {"c1": 4}


async def test_failed_publish__is_not_marked_done_so_the_retry_can_report_what_went() -> None:
    store = MemoryStore()
    with pytest.raises(ErasureIncomplete):
        await Eraser(SETTINGS, store, Recorder(fail=True)).forget("c1", actor="ops", via="http")
    assert store.calls == ["c1"]  # no "done:c1": the store keeps its note of what was removed
