"""Dead letters of hostile input stay small, and keys that disagree with customer_id are counted.

No network: the engine's decode step only (its store and publisher are never reached).
"""

from __future__ import annotations

import hashlib
import random

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import RecordTooLargeError
from prometheus_client import CollectorRegistry

from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.ingest import _unread_record
from streamseg.metrics import Metrics
from streamseg.publish.records import DeadLetter, dead_letter_bound
from streamseg.settings import Settings
from tests.fuzzing import NOW_MS, click

MB = 1_000_000


def decode_engine(**overrides: object) -> Engine:
    settings = Settings(**overrides)  # type: ignore[arg-type]
    store = RedisFeatureStore.from_url("redis://127.0.0.1:1/0", Keys("dl"), dedup_horizon_days=30,
                                       retention_days=30)
    return Engine(settings, store, build_segmenter(settings), publisher=None,  # type: ignore[arg-type]
                  metrics=Metrics(CollectorRegistry()), wall_ms=lambda: float(NOW_MS))


def decode(engine: Engine, *msgs: InMessage) -> tuple[int, list[DeadLetter]]:
    dead: list[DeadLetter] = []
    events, _ = engine.intake.decode(list(msgs), dead)
    return len(events), dead


@pytest.mark.parametrize("prefix", [0, 4096, 64 * 1024])
def test_dead_letter_of_20mb_with_hostile_key_and_detail__stays_under_the_bound(prefix: int) -> None:
    value = bytes(range(256)) * (20 * MB // 256)
    dl = DeadLetter.build(reason="too_large", detail="\x00" * MB, topic="t" * 249, partition=2**31 - 1,
                          offset=2**63 - 1, key=b"\x01" * (5 * MB), original=value,
                          index=9_999, customer_id="\x1f" * 128, prefix_bytes=prefix)
    assert len(dl.to_bytes()) <= dead_letter_bound(prefix)
    assert dl.original == value[:prefix] and dl.original_truncated
    assert (dl.original_size, dl.original_sha256) == (len(value), hashlib.sha256(value).hexdigest())


def test_default_bound__fits_far_below_any_broker_limit() -> None:
    assert dead_letter_bound() < 64 * 1024  # Kafka's default limit is ~1 MB; no broker goes lower


def test_engine_dead_letter__carries_the_configured_prefix_of_an_800kb_value() -> None:
    engine = decode_engine(dlq_prefix_bytes=100)
    value = orjson.dumps({**click(random.Random(1)), "pad": "y" * 800_000})
    _, (dl,) = decode(engine, InMessage(engine.settings.topic_clickstream, 0, 5, b"k", value))
    assert dl.reason == "too_large" and dl.original == value[:100] and dl.original_size == len(value)


def test_record_the_consumer_could_not_read__is_a_too_large_dead_letter_by_its_offset() -> None:
    engine = decode_engine()
    unread = InMessage(engine.settings.topic_transactions, 1, 42, None, None, unread="over 1 MiB")
    n, (dl,) = decode(engine, unread)
    assert n == 0 and (dl.reason, dl.detail, dl.source_partition, dl.source_offset) == (
        "too_large", "over 1 MiB", 1, 42)
    assert dl.original_size is None and dl.original_sha256 is None and dl.original_truncated


def test_key_differing_from_customer_id__is_applied_and_counted_once_per_message() -> None:
    engine = decode_engine()
    topic = engine.settings.topic_clickstream
    ev = {"event_id": "e1", "customer_id": "c1", "ts": NOW_MS, "type": "login", "session_id": "s"}
    one, envelope = orjson.dumps(ev), orjson.dumps([ev, {**ev, "customer_id": "c2"}])
    n, dead = decode(engine, InMessage(topic, 0, 0, b"c1", one),  # agrees
                     InMessage(topic, 0, 1, b"session-9", one),  # disagrees: counted
                     InMessage(topic, 0, 2, None, one),  # no key: nothing to disagree with
                     InMessage(topic, 0, 3, None, envelope),  # a collector's envelope
                     InMessage(topic, 0, 4, b"c9", envelope))  # keyed envelope: not judged
    assert (n, dead) == (7, [])
    count = engine.metrics.registry.get_sample_value
    assert count("streamseg_key_mismatches_total", {"topic": topic}) == 1


def test_record_too_large_error__becomes_an_unread_record_at_the_offset_aiokafka_skipped() -> None:
    """aiokafka's fetcher raises this (with these arguments) for a cut batch and has already
    moved past the offset; the consumer turns it into a record the engine dead-letters."""
    exc = RecordTooLargeError("There are some messages at [Partition=Offset]: %s=%s whose size "
                              "is larger than the fetch size %s", TopicPartition("clicks", 1), 42, 65536)
    ((tp, (rec,)),) = _unread_record(exc).items()
    assert (tp.topic, tp.partition, rec.offset, rec.value) == ("clicks", 1, 42, None)
    assert "65536 bytes" in rec.unread
