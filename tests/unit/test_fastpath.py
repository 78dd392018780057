"""The decode fast path never disagrees with pydantic, and takes the ordinary events."""

from __future__ import annotations

import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamseg.events.fastpath import fast_event
from streamseg.events.models import CLICK_TYPES, ClickEvent, TransactionEvent
from streamseg.generate import assign_personas, simulate

MODELS = {"click": ClickEvent, "transaction": TransactionEvent}
NOW_MS = 1_767_225_600_000

# values that stress each constraint: whitespace, control and non-ASCII edges,
# wrong JSON types, bounds, epoch seconds vs milliseconds, ISO text
texts = st.one_of(
    st.sampled_from(["e-1", "c000042", "", " ", " a", "a ", "\ta", "a\n", "\x00a", "a\x1fb",
                     "\u00a0x", "x\u3000", "é", "ok é", "x" * 128, "x" * 129, "x" * 200, "x" * 201,
                     "EUR", "eur", " EU", "EURO", "page_view", " login", "login "]),
    st.text(max_size=8),
)
numbers = st.one_of(
    st.sampled_from([0, 1, -1, 0.0, -0.0, 1e9, 1e9 + 1, 1_000_000_000, 2, 100_000, 100_001,
                     float("nan"), float("inf"), True, False, 2.5, 10**20]),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6),
)
timestamps = st.one_of(
    st.sampled_from([NOW_MS, NOW_MS / 1000, NOW_MS // 1000, 946_684_799_999, 946_684_800_000,
                     4_102_444_800_000, 4_102_444_799_999, 10**16, "2026-01-01T00:00:00Z",
                     "2026-01-01", " 2026-01-01 ", "1767225600000", "nope", True, None, 1.5e12]),
    st.integers(0, 5 * 10**12), st.floats(0, 5e12),
)
anything = st.one_of(st.none(), texts, numbers, timestamps, st.lists(texts, max_size=3),
                     st.booleans(), st.just({"a": 1}))
MISSING = object()

# documents that are valid most of the time, then up to two fields replaced by
# tricky values (or dropped): the fast path must answer often, and right
ident = st.from_regex(r"[A-Za-z0-9_.:-]{1,24}", fullmatch=True)
label = st.one_of(st.none(), st.just(""), ident, st.text(max_size=6))
money = st.one_of(st.floats(0, 1e9), st.integers(0, 10**9))
valid_ts = st.one_of(st.integers(946_684_800_000, 4_102_444_799_999),
                     st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", 1_767_225_600]))
optional = st.one_of(st.just(MISSING), st.just(MISSING), label)
valid_click = st.fixed_dictionaries({
    "event_id": ident, "customer_id": ident, "ts": valid_ts,
    "type": st.sampled_from(CLICK_TYPES), "session_id": ident, "device": optional,
    "channel": optional, "category": optional, "product_id": optional,
    "price": st.one_of(st.just(MISSING), st.none(), money),
})
valid_transaction = st.fixed_dictionaries({
    "event_id": ident, "customer_id": ident, "ts": valid_ts, "amount": money,
    "currency": st.sampled_from(["EUR", "USD", "gbp"]),
    "items": st.one_of(st.just(MISSING), st.integers(0, 100_000)),
    "categories": st.one_of(st.just(MISSING), st.lists(st.one_of(ident, st.just("")), max_size=5)),
    "discount_amount": st.one_of(st.just(MISSING), money),
    "refund": st.one_of(st.just(MISSING), st.booleans()),
})
tricky = st.one_of(texts, numbers, timestamps, anything, st.just(MISSING),
                   st.lists(texts, max_size=3))


def perturbed(valid: st.SearchStrategy[dict[str, Any]], keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    changes = st.lists(st.tuples(st.sampled_from([*keys, "kind", "extra", "ts_ms"]), tricky),
                       max_size=2)
    return st.builds(lambda doc, ch: {**doc, **dict(ch)}, valid, changes)


clicks = perturbed(valid_click, ["event_id", "customer_id", "ts", "type", "session_id", "device",
                                 "channel", "category", "product_id", "price"])
transactions = perturbed(valid_transaction, ["event_id", "customer_id", "ts", "amount", "currency",
                                             "items", "categories", "discount_amount", "refund"])


def pydantic_or_none(doc: dict[str, Any], kind: str) -> Any:
    try:
        return MODELS[kind].model_validate(doc)
    except ValidationError:
        return None


def check(doc: dict[str, Any], kind: str) -> None:
    doc = {k: v for k, v in doc.items() if v is not MISSING}
    fast = fast_event(doc, kind)
    if fast is None:
        return
    slow = pydantic_or_none(doc, kind)
    assert slow is not None, f"fast path accepted what pydantic refuses: {doc!r}"
    assert type(fast) is type(slow)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump() == slow.model_dump()
    assert {k: type(v) for k, v in fast.model_dump().items()} == {
        k: type(v) for k, v in slow.model_dump().items()}


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(clicks)
def test_fast_click__equals_pydantic_whenever_it_answers(doc: dict[str, Any]) -> None:
    check(doc, "click")


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(transactions)
def test_fast_transaction__equals_pydantic_whenever_it_answers(doc: dict[str, Any]) -> None:
    check(doc, "transaction")


def test_fast_path__takes_every_simulated_event_and_matches_pydantic() -> None:
    truth = assign_personas(40, seed=3)
    events = list(simulate(truth, days=20, end_ms=int(time.time() * 1000), seed=3))
    assert {e.topic_role for e in events} == {"clickstream", "transactions"}
    for ev in events:
        kind = "click" if ev.topic_role == "clickstream" else "transaction"
        doc = orjson.loads(orjson.dumps(ev.payload))
        fast = fast_event(doc, kind)
        assert fast is not None, doc
        assert fast == MODELS[kind].model_validate(doc)


def test_fast_path__leaves_explicit_kind_integer_ids_and_padding_to_pydantic() -> None:
    base = {"event_id": "e1", "customer_id": "c1", "ts": NOW_MS, "type": "login", "session_id": "s1"}
    assert fast_event(base, "click") is not None
    for change in ({"kind": "click"}, {"customer_id": 42}, {"session_id": "s1 "},
                   {"device": "\u00a0web"}, {"price": True}, {"ts": True}):
        assert fast_event({**base, **change}, "click") is None, change
