"""``streamseg api``'s view of the workers: model version, readiness and clock from their statuses."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from streamseg.api.server import STALE_AFTER_S, StoredModelView, _follow
from streamseg.settings import Settings

NOW_MS = 1_800_000_000_000.0


class Statuses:
    """What ``RedisFeatureStore.worker_statuses`` returns (the real one is tested on Valkey)."""

    def __init__(self, statuses: dict[str, dict[str, float]]) -> None:
        self.statuses = statuses

    async def worker_statuses(self) -> dict[str, dict[str, float]]:
        return self.statuses

    async def value_params(self) -> bytes | None:
        return None  # no customer-value model fitted


def view(statuses: dict[str, dict[str, float]], clock: str = "event") -> StoredModelView:
    return StoredModelView(Statuses(statuses), Settings(clock=clock),  # type: ignore[arg-type]
                           wall_ms=lambda: NOW_MS)


async def test_takes_the_newest_model_and_event_clock_across_workers() -> None:
    v = view({"a": {"clock_ms": 5_000.0, "model_version": 3, "at_ms": NOW_MS - 500},
              "b": {"clock_ms": 9_000.0, "model_version": 4, "at_ms": NOW_MS - 900}})
    assert (v.model_version(), v.loaded(), v.now_ms()) == (0, False, NOW_MS)  # nothing read yet
    await v.refresh()
    assert (v.model_version(), v.loaded(), v.now_ms()) == (4, True, 9_000.0)


@pytest.mark.parametrize("statuses", [
    {},  # no worker ever wrote
    {"a": {"clock_ms": 0.0, "model_version": 0, "at_ms": NOW_MS}},  # a worker without a model
    {"a": {"clock_ms": 1.0, "model_version": 2, "at_ms": NOW_MS - STALE_AFTER_S * 1000 - 1}},  # gone
])
async def test_is_not_ready_without_a_live_worker_holding_a_model(statuses: dict[str, dict[str, float]]) -> None:
    v = view(statuses)
    await v.refresh()
    assert not v.loaded()


async def test_uses_the_wall_clock_when_configured_or_before_any_event() -> None:
    v = view({"a": {"clock_ms": 9_000.0, "model_version": 1, "at_ms": NOW_MS}}, clock="wall")
    await v.refresh()
    assert v.now_ms() == NOW_MS
    v = view({"a": {"clock_ms": 0.0, "model_version": 1, "at_ms": NOW_MS}})
    await v.refresh()
    assert v.now_ms() == NOW_MS


def test_request_slice__the_kernel_reports_the_slice_asked_for_where_it_has_slices() -> None:
    import threading

    from streamseg.api.sched import current_slice_ms, request_slice

    def in_thread() -> None:  # its own thread: the test process keeps its default
        before = current_slice_ms()
        took = request_slice(0.3)  # never raises for a valid slice, on any kernel
        if before is None or not took:
            # not Linux 6.12+ on x86_64/aarch64: the documented answer is False, or a slice
            # the kernel cannot report; either way the slice it reports did not change
            seen.append(None)
            seen.append(current_slice_ms() == before)
            return
        seen.append(current_slice_ms())
        child: list[float | None] = []
        t = threading.Thread(target=lambda: child.append(current_slice_ms()))
        t.start()
        t.join()
        seen.append(child[0])

    seen: list[float | None] = []
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    if seen[0] is None:  # a kernel without per-task slices: asked, refused, unchanged
        assert seen == [None, True], seen
        return
    assert seen == [0.3, 0.3], "the slice applies to the thread and to threads it starts"


def test_request_slice__refuses_a_slice_the_kernel_would_not_take() -> None:
    from streamseg.api.sched import request_slice

    with pytest.raises(ValueError, match=r"0\.1-100 ms"):
        request_slice(0.05)
    with pytest.raises(ValidationError, match="API_SLICE_MS"):
        Settings(api_slice_ms=0.05)


class LosesCancels:
    """A status read that completes normally although its task was cancelled, as a redis-py
    8.1 call does for many cancels that land while it runs (a fault no real server can be
    made to show on demand)."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.reads = 0

    async def refresh(self) -> None:
        self.reads += 1
        self.reading.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def test_following_the_workers__ends_at_shutdown_even_when_a_read_loses_the_cancel() -> None:
    reads = LosesCancels()
    stop = asyncio.Event()
    follow = asyncio.create_task(_follow(reads, stop))  # type: ignore[arg-type]
    await reads.reading.wait()
    stop.set()
    follow.cancel()
    await asyncio.wait_for(asyncio.gather(follow, return_exceptions=True), 10)
    assert follow.done() and reads.reads == 1
