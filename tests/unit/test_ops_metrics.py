"""Operational metrics: the retry loop counts outages (bugs are raised), GC pauses are timed.

A broker error a real broker cannot easily be made to return on cue is faked
here; the outages themselves run against real servers in test_resilience.py.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from streamseg.engine import Engine, build_segmenter
from streamseg.errors import StoreUnavailable
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.settings import Settings

SETTINGS = Settings()


def engine() -> Engine:
    store = RedisFeatureStore.from_url("redis://127.0.0.1:1/0", Keys("retry"),
                                       dedup_horizon_days=30, retention_days=30)
    return Engine(SETTINGS, store, build_segmenter(SETTINGS), publisher=None,  # type: ignore[arg-type]
                  metrics=Metrics(CollectorRegistry()))


def failing(*errors: Exception) -> tuple[list[int], object]:
    calls = [0]

    async def op() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return "done"
    return calls, op


def test_retry__counts_broker_and_store_outages_separately(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streamseg.retry.asyncio.sleep", _no_sleep)
    e = engine()
    calls, op = failing(KafkaTimeoutError(), KafkaTimeoutError(), StoreUnavailable("down"))
    assert asyncio.run(e.retry(op, "publishing")) == "done"  # type: ignore[arg-type]
    assert calls[0] == 4
    assert e.metrics.publish_retries._value.get() == 2
    assert e.metrics.store_retries._value.get() == 1


def test_retry__raises_what_is_not_an_outage() -> None:
    e = engine()
    calls, op = failing(ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(e.retry(op, "publishing"))  # type: ignore[arg-type]
    assert calls[0] == 1
    assert e.metrics.publish_retries._value.get() == 0


async def _no_sleep(_: float) -> None:
    return None


def test_watch_gc__records_every_collection_by_generation() -> None:
    import gc

    from streamseg.metrics import watch_gc

    m = Metrics(CollectorRegistry())
    watch_gc(m)
    watch_gc(m)  # idempotent: one callback per process
    before = m.registry.get_sample_value("streamseg_gc_pause_seconds_count", {"generation": "2"}) or 0.0
    gc.collect()
    gc.collect()
    after = m.registry.get_sample_value("streamseg_gc_pause_seconds_count", {"generation": "2"})
    assert after == before + 2


def test_segment_sizes__an_empty_retired_segment_leaves_the_gauge() -> None:
    """A retired segment keeps its name, which a newer one may reuse: once it is empty it goes."""
    metrics = Metrics(CollectorRegistry())
    names = {0: "Window shoppers", 5: "High-value loyalists", 6: "High-value loyalists", 7: "New explorers"}
    # 5 retired (empty), 4 retired but still holding customers, 7 live but never assigned yet
    metrics.set_segment_sizes({0: 10, 4: 3, 5: 0, 6: 7}, live=[0, 6, 7],
                              name_of=lambda sid: names.get(sid, f"Segment {sid}"))
    exported = {(s.labels["segment"], s.labels["name"]): s.value
                for family in metrics.segment_size.collect() for s in family.samples}
    assert exported == {("0", "Window shoppers"): 10, ("4", "Segment 4"): 3,
                        ("6", "High-value loyalists"): 7, ("7", "New explorers"): 0}
