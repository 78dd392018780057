"""Concurrent customer lookups share Redis round trips."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streamseg.api.lookup import CoalescedReads


class Reads:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, ids: Sequence[str]) -> list[dict[str, float | str]]:
        self.calls.append(list(ids))
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
    await asyncio.sleep(0.002)  # the first read is in flight now
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
