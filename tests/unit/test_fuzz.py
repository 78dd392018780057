"""Bad input at volume: 100k hostile messages through the engine's decode path, plus hypothesis.

No input may crash decoding, and every element must come out either as a
valid event or as a dead letter with a known reason:
``events + rejections == inputs``, counted per envelope element.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.events.decode import DecodeOutcome, EventKind, decode_message
from streamseg.events.models import DEFAULT_EARLIEST_MS, ClickEvent, Event, TransactionEvent
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.metrics import Metrics
from streamseg.publish.records import DeadLetter, dead_letter_bound
from streamseg.settings import Settings
from tests.fuzzing import (
    LARGE_VALUES,
    MAX_BYTES,
    NOW_MS,
    REASONS,
    FuzzInput,
    click,
    fuzz_inputs,
    positions,
    transaction,
)

pytestmark = pytest.mark.fuzz

N_INPUTS = 100_000
CHUNK = 500  # messages per engine batch
SETTINGS = Settings(max_message_bytes=MAX_BYTES)
SKEW_MS = int(SETTINGS.max_future_skew_s * 1000)
UNKNOWN_TOPIC = "somebody-elses.topic"
TOPIC_OF: dict[EventKind, str] = {"click": SETTINGS.topic_clickstream,
                                  "transaction": SETTINGS.topic_transactions}
KIND_OF = {topic: kind for kind, topic in TOPIC_OF.items()}


def assert_valid_event(ev: Event, kind: str) -> None:
    """What a decoded event promises everything downstream."""
    assert ev.kind == kind
    assert DEFAULT_EARLIEST_MS <= ev.ts_ms <= NOW_MS + SKEW_MS
    assert 1 <= len(ev.customer_id) <= 128 and all(ord(c) >= 0x20 for c in ev.customer_id)
    assert ev.event_id
    if isinstance(ev, TransactionEvent):
        for money in (ev.amount, ev.discount_amount):
            assert math.isfinite(money) and 0 <= money <= 1e9
        assert 0 <= ev.items <= 100_000
    else:
        assert isinstance(ev, ClickEvent) and ev.session_id
        assert ev.price is None or math.isfinite(ev.price)


def assert_accounted(raw: bytes | None, got: list[int | None]) -> None:
    """One outcome per element of an envelope (by index), exactly one for any other message."""
    want = positions(raw, MAX_BYTES)
    assert sorted(got, key=lambda i: -1 if i is None else i) == want, (raw and raw[:80], got)


def check_decoded(inp: FuzzInput, out: DecodeOutcome) -> None:
    for ev in out.events:
        assert_valid_event(ev, inp.kind)
    for r in out.rejects:
        assert r.reason in REASONS and r.detail, r
    assert len(out.indices) == len(out.events)
    assert_accounted(inp.raw, [*out.indices, *(r.index for r in out.rejects)])


# --- 100k seeded inputs through Intake.decode ------------------------------------------------


def assert_carries(d: DeadLetter, value: bytes, digests: dict[int, str]) -> None:
    """A dead letter names the whole value (size, SHA-256) and carries a bounded prefix of it,
    so publishing it cannot fail for size, whatever the input. (``digests``: by offset, so an
    envelope's value is hashed once.)"""
    prefix = SETTINGS.dlq_prefix_bytes
    assert d.original == value[:prefix] and d.original_truncated == (len(value) > prefix)
    digest = digests.get(d.source_offset) or digests.setdefault(
        d.source_offset, hashlib.sha256(value).hexdigest())
    assert (d.original_size, d.original_sha256) == (len(value), digest)
    assert len(d.to_bytes()) <= dead_letter_bound(prefix)


def message(offset: int, inp: FuzzInput) -> InMessage:
    topic = UNKNOWN_TOPIC if offset % 97 == 0 else TOPIC_OF[inp.kind]
    key = (None, b"c1", b"\xff\xfe", f"k{offset}".encode())[offset % 4]
    return InMessage(topic, offset % 3, offset, key, inp.raw, timestamp=NOW_MS / 1000)


def decode_engine() -> Engine:
    """An engine whose store and publisher are never reached: only ``_decode`` runs."""
    store = RedisFeatureStore.from_url("redis://127.0.0.1:1/0", Keys("fuzz"),
                                       dedup_horizon_days=30, retention_days=30)
    return Engine(SETTINGS, store, build_segmenter(SETTINGS), publisher=None,  # type: ignore[arg-type]
                  metrics=Metrics(CollectorRegistry()), wall_ms=lambda: float(NOW_MS))


def test_100k_hostile_messages__every_element_is_an_event_or_a_dead_letter_with_a_reason() -> None:
    engine = decode_engine()
    inputs = list(fuzz_inputs(seed=2026, n=N_INPUTS))
    totals: Counter[str] = Counter()
    for start in range(0, N_INPUTS, CHUNK):
        msgs = [message(start + i, inp) for i, inp in enumerate(inputs[start:start + CHUNK])]
        dead: list[DeadLetter] = []
        events, origin = engine.intake.decode(msgs, dead)
        seen: dict[int, list[int | None]] = {m.offset: [] for m in msgs}
        for ev, (msg, index) in zip(events, origin, strict=True):
            assert_valid_event(ev, KIND_OF[msg.topic])
            seen[msg.offset].append(index)
        by_offset = {m.offset: m for m in msgs}
        digests: dict[int, str] = {}
        for d in dead:
            src = by_offset[d.source_offset]
            assert d.reason in REASONS and d.detail, d
            assert (d.source_topic, d.source_partition) == (src.topic, src.partition)
            assert_carries(d, src.value or b"", digests)
            seen[d.source_offset].append(d.index)
        for m in msgs:
            if m.topic == UNKNOWN_TOPIC:
                assert seen[m.offset] == [None]
            else:
                assert_accounted(m.value, seen[m.offset])
        DeadLetter.model_validate_json(dead[-1].to_bytes())  # the published form reads back
        totals["units"] += sum(1 if m.topic == UNKNOWN_TOPIC else len(positions(m.value)) for m in msgs)
        totals["events"] += len(events)
        totals["large"] += sum(any(m.value is v for v in LARGE_VALUES) for m in msgs)
        totals["binary"] += sum(len(m.value or b"") < 4096 and not _utf8(m.value) for m in msgs)
        totals.update(d.reason for d in dead)
    assert totals["events"] + sum(totals[r] for r in REASONS) == totals["units"]
    # the generator must keep reaching every class of bad input, and plenty of good ones
    assert {r for r in REASONS if totals[r]} == REASONS - {"late_event", "processing_error"}, totals
    assert totals["events"] > totals["units"] // 10, totals
    assert totals["large"] > 100 and totals["binary"] > 1000, totals  # the payloads that crashed workers


# --- hypothesis: structured inputs near the valid ones ------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=30) | \
    st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = ("event_id", "customer_id", "ts", "type", "session_id", "amount", "currency", "items",
          "categories", "discount_amount", "refund", "price", "category")


@st.composite
def near_events(draw: st.DrawFn) -> dict[str, object]:
    """A valid click or transaction with some fields replaced, dropped or added."""
    base = (click if draw(st.booleans()) else transaction)(random.Random(draw(st.integers(0, 2**32))))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            base.pop(name, None)
        else:
            base[name] = draw(json_values)
    return base


elements = near_events() | json_values
messages = (
    elements.map(orjson.dumps)
    | st.lists(elements, max_size=6).map(orjson.dumps)
    | st.tuples(elements.map(orjson.dumps), st.integers(0, 400)).map(lambda t: t[0][: t[1]])
    | st.binary(max_size=200)
    | st.none()
)


@hsettings(max_examples=1_000, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kind=st.sampled_from(["click", "transaction"]), raw=messages)
def test_any_message__decodes_to_events_and_reasoned_rejections_one_per_element(
    kind: EventKind, raw: bytes | None
) -> None:
    inp = FuzzInput(kind, raw)
    check_decoded(inp, decode_message(raw, kind, max_bytes=MAX_BYTES, now_ms=NOW_MS,
                                      max_future_ms=SKEW_MS))


def _utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode()
    except UnicodeDecodeError:
        return False
    return True
