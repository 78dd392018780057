"""Concurrent customer lookups share Redis round trips."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streamseg.api.lookup import CatalogNames, CoalescedReads


class Reads:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.started = asyncio.Event()  # a read is in flight

    async def __call__(self, ids: Sequence[str]) -> list[dict[str, float | str]]:
        self.calls.append(list(ids))
        self.started.set()
        await asyncio.sleep(0.01)  # a round trip
        if self.fail:
            raise ConnectionError("redis down")
        return [{"n_events": float(len(cid))} if cid != "nobody" else {} for cid in ids]


async def test_lookups_arriving_together__share_one_read_and_each_gets_its_own_state() -> None:
    reads = Reads()
    coalesced = CoalescedReads(reads)
    got = await asyncio.gather(*(coalesced.get(cid) for cid in ["a", "bb", "a", "nobody"]))
    assert got == [{"n_events": 1.0}, {"n_events": 2.0}, {"n_events": 1.0}, {}]
    assert reads.calls == [["a", "bb", "nobody"]]  # one read, each customer once


async def test_lookups_during_a_read__go_together_in_the_next_one() -> None:
    reads = Reads()
    coalesced = CoalescedReads(reads)
    first = asyncio.ensure_future(coalesced.get("a"))
    await asyncio.wait_for(reads.started.wait(), 5)  # the first read is in flight now
    later = [asyncio.ensure_future(coalesced.get(c)) for c in ["b", "c"]]
    await asyncio.gather(first, *later)
    assert reads.calls == [["a"], ["b", "c"]]
    assert await coalesced.get("d") == {"n_events": 1.0}  # idle again: read at once
    assert reads.calls[-1] == ["d"]


async def test_a_failed_read__reaches_every_waiter() -> None:
    coalesced = CoalescedReads(Reads(fail=True))
    results = await asyncio.gather(coalesced.get("a"), coalesced.get("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    with pytest.raises(ConnectionError):  # and the next lookup still gets an answer, not a hang
        await asyncio.wait_for(coalesced.get("c"), 1)


class Catalog:
    """A catalog read that hands out versions of the names, optionally held or failing."""

    def __init__(self) -> None:
        self.names = {1: "Loyal big spenders"}
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self) -> dict[int, str]:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("Redis away")
        return dict(self.names)


async def test_catalog_names__first_lookup_waits_then_stale_names_are_re_read_behind_the_lookup() -> None:
    catalog = Catalog()
    names = CatalogNames(catalog, dict, max_age=0.0)
    assert await names.get() == {1: "Loyal big spenders"}
    catalog.names = {1: "Renamed"}
    catalog.gate = asyncio.Event()  # the re-read hangs: the lookup must not wait for it
    assert await asyncio.wait_for(names.get(), 1) == {1: "Loyal big spenders"}
    assert await asyncio.wait_for(names.get(), 1) == {1: "Loyal big spenders"}
    assert catalog.reads == 2, "one re-read at a time, however many lookups find the names stale"
    catalog.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await names.get() == {1: "Renamed"}
    await names.close()


async def test_catalog_names__a_failed_re_read_keeps_the_names_and_a_first_read_error_reaches_the_caller() -> None:
    catalog = Catalog()
    catalog.fail = True
    names = CatalogNames(catalog, lambda: {2: "From the engine"}, max_age=0.0)
    with pytest.raises(ConnectionError):
        await names.get()
    catalog.fail = False
    assert await names.get() == {1: "Loyal big spenders", 2: "From the engine"}
    catalog.fail = True
    for _ in range(3):
        assert await names.get() == {1: "Loyal big spenders", 2: "From the engine"}
        await asyncio.sleep(0)
    assert catalog.reads >= 3, "a failed re-read is tried again on a later lookup"
    await names.close()


async def test_catalog_names__close_cancels_a_re_read_in_flight() -> None:
    catalog = Catalog()
    names = CatalogNames(catalog, dict, max_age=0.0)
    await names.get()
    catalog.gate = asyncio.Event()
    await names.get()
    task = names._refresh
    assert task is not None and not task.done()
    await names.close()
    assert task.cancelled()
