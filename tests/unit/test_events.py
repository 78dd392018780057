"""The input contract (decode_message + event models) and the output records.

Every test decodes real bytes the way the worker does; nothing touches the network.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamseg.events.currency import Currencies
from streamseg.events.decode import MAX_EVENTS_PER_MESSAGE, Admission, DecodeOutcome, decode_message
from streamseg.events.models import (
    CLICK_TYPES,
    DEFAULT_EARLIEST_MS,
    MAX_TS_MS,
    MIN_TS_MS,
    ClickEvent,
    TransactionEvent,
    iso,
    parse_ts,
)
from streamseg.publish.records import DeadLetter, SegmentUpdate
from streamseg.timeunits import HOUR_MS

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MAX_BYTES = 65_536


def click(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "e-1", "customer_id": "c-1", "ts": NOW_MS, "type": "page_view",
        "session_id": "s-1",
    }
    doc.update(over)
    return doc


def txn(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "o-1", "customer_id": "c-1", "ts": NOW_MS, "amount": 42.5, "currency": "EUR",
    }
    doc.update(over)
    return doc


def decode(
    value: Any, kind: str = "click", *, now_ms: int = NOW_MS, max_bytes: int = MAX_BYTES,
    **kw: Any,
) -> DecodeOutcome:
    raw = value if isinstance(value, bytes | None) else orjson.dumps(value)
    return decode_message(raw, kind, max_bytes=max_bytes, now_ms=now_ms, **kw)  # type: ignore[arg-type]


def only_event(out: DecodeOutcome) -> ClickEvent | TransactionEvent:
    assert out.rejects == [], out.rejects
    assert len(out.events) == 1
    return out.events[0]


def only_reject(out: DecodeOutcome):  # type: ignore[no-untyped-def]
    assert out.events == []
    assert len(out.rejects) == 1, out.rejects
    return out.rejects[0]


# --------------------------------------------------------------------------- good events


def test_good_click_event__decodes_to_a_click_with_all_fields() -> None:
    ev = only_event(decode(click(type="add_to_cart", device="mobile", channel="email",
                                 category="shoes", product_id="p-9", price=19.99)))
    assert isinstance(ev, ClickEvent)
    assert (ev.kind, ev.type, ev.session_id) == ("click", "add_to_cart", "s-1")
    assert (ev.event_id, ev.customer_id, ev.ts_ms) == ("e-1", "c-1", NOW_MS)
    assert (ev.device, ev.channel, ev.category, ev.product_id, ev.price) == (
        "mobile", "email", "shoes", "p-9", 19.99)


def test_good_transaction_event__decodes_with_defaults_for_optional_fields() -> None:
    ev = only_event(decode(txn(), "transaction"))
    assert isinstance(ev, TransactionEvent)
    assert (ev.kind, ev.amount, ev.currency) == ("transaction", 42.5, "EUR")
    assert (ev.items, ev.categories, ev.discount_amount, ev.refund) == (1, [], 0.0, False)


def test_full_transaction_event__keeps_items_categories_discount_and_refund() -> None:
    ev = only_event(decode(txn(items=3, categories=["shoes", "bags"], discount_amount=5,
                               refund=True), "transaction"))
    assert isinstance(ev, TransactionEvent)
    assert (ev.items, ev.categories, ev.discount_amount, ev.refund) == (3, ["shoes", "bags"], 5.0, True)


def test_integer_amount__is_accepted_as_a_float() -> None:
    ev = only_event(decode(txn(amount=42), "transaction"))
    assert isinstance(ev, TransactionEvent)
    assert ev.amount == 42.0 and isinstance(ev.amount, float)


@pytest.mark.parametrize("click_type", CLICK_TYPES)
def test_every_documented_click_type__is_accepted(click_type: str) -> None:
    assert only_event(decode(click(type=click_type))).type == click_type  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        pytest.param("2026-01-01T00:00:00Z", NOW_MS, id="iso-with-Z"),
        pytest.param("2026-01-01T00:00:00.250Z", NOW_MS + 250, id="iso-with-millis"),
        pytest.param("2026-01-01T01:00:00+01:00", NOW_MS, id="iso-with-positive-offset"),
        pytest.param("2025-12-31T19:00:00-05:00", NOW_MS, id="iso-with-negative-offset"),
        pytest.param("2026-01-01T00:00:00", NOW_MS, id="naive-iso-is-utc"),
        pytest.param("2026-01-01 00:00:00", NOW_MS, id="naive-iso-with-space"),
        pytest.param("2026-01-01", NOW_MS, id="date-only-is-utc-midnight"),
        pytest.param(" 2026-01-01T00:00:00Z ", NOW_MS, id="iso-with-surrounding-blanks"),
        pytest.param(1_767_225_600, NOW_MS, id="epoch-seconds"),
        pytest.param(1_767_225_600.5, NOW_MS + 500, id="epoch-seconds-fractional"),
        pytest.param(1_767_225_600_000, NOW_MS, id="epoch-millis"),
        pytest.param("1767225600", NOW_MS, id="numeric-string-seconds"),
        pytest.param("1767225600000", NOW_MS, id="numeric-string-millis"),
    ],
)
def test_ts_formats__all_normalise_to_utc_epoch_millis(ts: object, expected_ms: int) -> None:
    assert only_event(decode(click(ts=ts))).ts_ms == expected_ms
    assert only_event(decode(txn(ts=ts), "transaction")).ts_ms == expected_ms


def test_parse_ts__seconds_and_millis_boundary_is_10_to_the_11() -> None:
    # 10^11 - 1 is read as seconds (year ~5138, out of range); 10^11 as millis (1973, too early)
    with pytest.raises(ValueError, match="between 1900-01-01 and 2100-01-01"):
        parse_ts(10**11 - 1)
    assert parse_ts(10**11) == 10**11
    assert only_reject(decode(click(ts=10**11))).reason == "too_old"
    assert parse_ts(MIN_TS_MS) == MIN_TS_MS
    assert parse_ts(MIN_TS_MS // 1000) == MIN_TS_MS


def test_parse_ts__upper_bound_is_exclusive() -> None:
    assert parse_ts(MAX_TS_MS - 1) == MAX_TS_MS - 1
    with pytest.raises(ValueError):
        parse_ts(MAX_TS_MS)


def test_iso__renders_millis_with_z_and_round_trips_through_parse_ts() -> None:
    assert iso(NOW_MS + 7) == "2026-01-01T00:00:00.007Z"
    assert parse_ts(iso(NOW_MS + 7)) == NOW_MS + 7


def test_unknown_extra_fields__are_tolerated_and_dropped() -> None:
    doc = click(referrer="https://x", nested={"a": [1, 2]}, amount="not-a-click-field")
    ev = only_event(decode(doc))
    assert "referrer" not in ev.model_dump()
    assert "nested" not in ev.model_dump()


def test_integer_customer_id__is_accepted_as_text() -> None:
    ev = only_event(decode(click(customer_id=123456789)))
    assert ev.customer_id == "123456789"
    ev = only_event(decode(txn(customer_id=9_223_372_036_854_775_808), "transaction"))
    assert ev.customer_id == "9223372036854775808"


def test_customer_id_surrounding_whitespace__is_stripped() -> None:
    assert only_event(decode(click(customer_id="  c-9  "))).customer_id == "c-9"


def test_events_are_frozen() -> None:
    ev = only_event(decode(click()))
    with pytest.raises(ValidationError):
        ev.customer_id = "someone-else"  # type: ignore[misc]


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("raw", [b"", None], ids=["zero-bytes", "null-value"])
def test_empty_message__is_rejected_as_empty(raw: bytes | None) -> None:
    r = only_reject(decode_message(raw, "click", max_bytes=MAX_BYTES, now_ms=NOW_MS))
    assert r.reason == "empty"
    assert "empty" in r.detail


def test_message_over_max_bytes__is_rejected_as_too_large_with_both_sizes() -> None:
    raw = orjson.dumps(click(padding="x" * 500))
    r = only_reject(decode(raw, max_bytes=256))
    assert r.reason == "too_large"
    assert str(len(raw)) in r.detail and "256" in r.detail


def test_message_exactly_at_max_bytes__is_accepted() -> None:
    raw = orjson.dumps(click())
    assert only_event(decode(raw, max_bytes=len(raw))).event_id == "e-1"


def test_envelope_with_too_many_events__is_rejected_as_too_large() -> None:
    raw = orjson.dumps([{}] * (MAX_EVENTS_PER_MESSAGE + 1))
    r = only_reject(decode(raw, max_bytes=len(raw)))
    assert r.reason == "too_large"
    assert str(MAX_EVENTS_PER_MESSAGE) in r.detail


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\x00{", b'{"event_id": "\xc3\x28"}', b'{"customer_id": "caf\xe9"}'],
    ids=["garbage", "bad-continuation-byte", "latin-1-text"],
)
def test_non_utf8_bytes__are_rejected_as_not_utf8(raw: bytes) -> None:
    r = only_reject(decode(raw))
    assert r.reason == "not_utf8"
    assert "UTF-8" in r.detail and "byte" in r.detail


@pytest.mark.parametrize(
    "raw",
    [b'{"event_id": 1', b"{'single': 'quotes'}", b"{,}", b'{"a": 1} trailing', b"NaN",
     b'{"ts": Infinity}'],
)
def test_malformed_json__is_rejected_as_malformed_json(raw: bytes) -> None:
    r = only_reject(decode(raw))
    assert r.reason == "malformed_json"
    assert r.detail.startswith("invalid JSON")


@pytest.mark.parametrize("field", ["amount", "ts", "discount_amount"])
def test_number_overflowing_a_double__is_rejected_not_turned_into_infinity(field: str) -> None:
    # orjson refuses literals like 1e400 instead of producing inf, so no
    # non-finite value can ever reach the models.
    body = orjson.dumps(txn(**{field: 0})).replace(f'"{field}":0'.encode(), f'"{field}":1e400'.encode())
    assert b"1e400" in body
    r = only_reject(decode(body, "transaction"))
    assert r.reason == "malformed_json"
    assert "infinity" in r.detail


@pytest.mark.parametrize("raw", [b"42", b'"hello"', b"null", b"true", b"3.5"])
def test_json_scalar__is_rejected_as_not_an_object(raw: bytes) -> None:
    r = only_reject(decode(raw))
    assert r.reason == "not_an_object"
    assert r.index is None
    assert "expected an object" in r.detail


@pytest.mark.parametrize(
    ("kind", "make", "field"),
    [
        ("click", click, "event_id"),
        ("click", click, "customer_id"),
        ("click", click, "ts"),
        ("click", click, "type"),
        ("click", click, "session_id"),
        ("transaction", txn, "event_id"),
        ("transaction", txn, "customer_id"),
        ("transaction", txn, "ts"),
        ("transaction", txn, "amount"),
        ("transaction", txn, "currency"),
    ],
)
def test_missing_required_field__is_rejected_as_missing_field_naming_it(
    kind: str, make: Any, field: str
) -> None:
    doc = make()
    del doc[field]
    r = only_reject(decode(doc, kind))
    assert r.reason == "missing_field"
    assert field in r.detail
    assert r.customer_id == (None if field == "customer_id" else "c-1")


def test_missing_ts__is_rejected_as_missing_field() -> None:
    doc = click()
    del doc["ts"]
    r = only_reject(decode(doc))
    assert (r.reason, r.detail) == ("missing_field", "ts: Field required")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "42.5"),  # numbers as text are refused (strict)
        ("amount", -1),
        ("amount", 1e9 + 1),
        ("amount", True),
        ("amount", None),
        ("refund", "yes"),
        ("refund", 1),
        ("items", 2.5),
        ("items", 2.0),  # strict: a float is not an item count
        ("items", -1),
        ("items", "3"),
        ("discount_amount", -0.01),
        ("currency", "EURO"),
        ("currency", "EU"),
        ("categories", "shoes"),
        ("categories", ["x"] * 101),
        ("customer_id", ""),
        ("customer_id", "   "),
        ("customer_id", "a\nb"),
        ("customer_id", "x" * 129),
        ("customer_id", 12.5),
        ("customer_id", ["c-1"]),
        ("event_id", ""),
        ("event_id", 17),
        ("ts", "yesterday"),
        ("ts", True),
        ("ts", None),
        ("ts", [NOW_MS]),
        ("ts", -3_000_000_000),  # 1874: before any time an event can carry
    ],
)
def test_wrong_type_or_out_of_range_transaction_field__is_rejected_as_invalid_field_naming_it(
    field: str, value: object
) -> None:
    r = only_reject(decode(txn(**{field: value}), "transaction"))
    assert r.reason == "invalid_field"
    assert r.detail.startswith(f"{field}:") or f"{field}." in r.detail, r.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", "teleport"), ("type", "PAGE_VIEW"), ("type", None), ("session_id", ""),
     ("price", -5), ("price", "9.99"), ("device", "d" * 201)],
)
def test_invalid_click_field__is_rejected_as_invalid_field_naming_it(field: str, value: object) -> None:
    r = only_reject(decode(click(**{field: value})))
    assert r.reason == "invalid_field"
    assert field in r.detail


def test_unknown_click_type__detail_lists_the_allowed_types() -> None:
    r = only_reject(decode(click(type="teleport")))
    assert r.reason == "invalid_field"
    assert "type" in r.detail and "page_view" in r.detail


def test_rejection_of_an_identified_event__carries_its_customer_id() -> None:
    r = only_reject(decode(txn(customer_id="c-77", amount="lots"), "transaction"))
    assert r.customer_id == "c-77"
    r = only_reject(decode(txn(customer_id=77, amount="lots"), "transaction"))
    assert r.customer_id == "77"


@pytest.mark.parametrize(
    "ts", ["1999-12-31T23:59:59Z", 946_684_799, 946_684_799_999, "1970-01-01", 0],
)
def test_ts_before_2000__is_rejected_as_too_old_naming_the_setting(ts: object) -> None:
    r = only_reject(decode(click(ts=ts)))
    assert r.reason == "too_old"
    assert r.detail.startswith("ts ")
    assert "2000-01-01" in r.detail and "STREAMSEG_EARLIEST_EVENT_TIME" in r.detail


def test_ts_at_2000_01_01__is_accepted() -> None:
    assert only_event(decode(click(ts="2000-01-01T00:00:00Z"))).ts_ms == DEFAULT_EARLIEST_MS


def test_ts_beyond_max_future_skew__is_rejected_as_future_event() -> None:
    r = only_reject(decode(click(ts=NOW_MS + 2 * HOUR_MS)))
    assert r.reason == "future_event"
    assert "3600s beyond" in r.detail  # 2 h ahead, 1 h allowed
    assert r.customer_id == "c-1"


def test_ts_within_max_future_skew__is_accepted_up_to_the_limit_inclusive() -> None:
    assert only_event(decode(click(ts=NOW_MS + 30 * 60_000))).ts_ms == NOW_MS + 30 * 60_000
    assert only_event(decode(click(ts=NOW_MS + HOUR_MS))).ts_ms == NOW_MS + HOUR_MS
    assert only_reject(decode(click(ts=NOW_MS + HOUR_MS + 1))).reason == "future_event"


def test_max_future_ms__is_configurable() -> None:
    ts = NOW_MS + 10_000
    assert only_reject(decode(click(ts=ts), max_future_ms=0)).reason == "future_event"
    assert only_event(decode(click(ts=ts), max_future_ms=10_000)).ts_ms == ts


def test_ts_as_very_long_digit_string__is_rejected_as_invalid_field() -> None:
    # 4301+ digits trip Python's int-from-text limit: a ValueError, which pydantic reports
    r = only_reject(decode(click(ts="1" * 5000)))
    assert r.reason == "invalid_field"


def test_ts_as_digit_string_too_big_for_a_double__is_rejected_not_raised() -> None:
    out = decode(click(ts="1" + "0" * 400))  # float() overflows: must still be a rejection
    assert only_reject(out).reason == "invalid_field"


# --------------------------------------------------------------------------- batched envelopes


def test_batched_envelope__keeps_good_elements_and_rejects_bad_ones_by_index() -> None:
    no_ts = click(event_id="e-2")
    del no_ts["ts"]
    batch = [
        click(event_id="e-1"),
        no_ts,
        click(event_id="e-3", type="login"),
        "not an event",
        click(event_id="e-5", type="teleport", customer_id="c-5"),
        [click(event_id="nested")],
        click(event_id="e-7", ts=NOW_MS + 5 * HOUR_MS),
        click(event_id="e-8"),
    ]
    out = decode(batch)
    assert [e.event_id for e in out.events] == ["e-1", "e-3", "e-8"]
    got = [(r.index, r.reason) for r in out.rejects]
    assert got == [
        (1, "missing_field"),
        (3, "not_an_object"),
        (4, "invalid_field"),
        (5, "not_an_object"),
        (6, "future_event"),
    ]
    assert out.rejects[2].customer_id == "c-5"
    assert "str" in out.rejects[1].detail and "list" in out.rejects[3].detail


def test_batched_envelope_of_transactions__decodes_every_element() -> None:
    out = decode([txn(event_id=f"o-{i}", amount=float(i)) for i in range(20)], "transaction")
    assert out.rejects == []
    assert [e.amount for e in out.events] == [float(i) for i in range(20)]  # type: ignore[union-attr]


def test_single_object__rejection_has_no_index() -> None:
    assert only_reject(decode(click(type="teleport"))).index is None


def test_empty_envelope__is_rejected_as_empty() -> None:
    r = only_reject(decode(b"[]"))
    assert r.reason == "empty"
    assert "array" in r.detail


def test_click_decoded_as_transaction__is_rejected_for_the_missing_fields() -> None:
    r = only_reject(decode(click(), "transaction"))
    assert r.reason == "missing_field"
    assert "amount" in r.detail and "currency" in r.detail


# --------------------------------------------------------------------------- properties

FIELDS = ["event_id", "customer_id", "ts", "type", "session_id", "amount", "currency", "items",
          "categories", "discount_amount", "refund", "price", "device", "category"]
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "1767225600", "page_view", "EUR"])
    | st.integers(min_value=MIN_TS_MS - 10**6, max_value=NOW_MS + 10 * HOUR_MS)
)
JSONISH = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(FIELDS) | TEXT, children, max_size=8),
    max_leaves=30,
)
EVENTISH = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.sampled_from(["e-1", "", "e-2"]) | LEAVES,
        "customer_id": st.sampled_from(["c-1", "  ", "c\n2"]) | LEAVES,
        "ts": LEAVES,
        "type": st.sampled_from(CLICK_TYPES) | LEAVES,
        "session_id": st.just("s-1") | LEAVES,
        "amount": st.floats(min_value=-10, max_value=2e9) | LEAVES,
        "currency": st.just("EUR") | LEAVES,
        "items": st.integers(-2, 5) | LEAVES,
        "refund": LEAVES,
        "categories": st.lists(TEXT, max_size=3) | LEAVES,
    },
)
PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _accounted(raw: bytes, kind: str) -> DecodeOutcome:
    out = decode_message(raw, kind, max_bytes=MAX_BYTES, now_ms=NOW_MS)  # type: ignore[arg-type]
    assert len(out.events) + len(out.rejects) >= 1, "input vanished without event or rejection"
    for r in out.rejects:
        assert r.reason in {"empty", "too_large", "not_utf8", "malformed_json", "not_an_object",
                            "missing_field", "invalid_field", "future_event", "too_old"}
        assert r.detail
    for e in out.events:
        assert DEFAULT_EARLIEST_MS <= e.ts_ms <= NOW_MS + HOUR_MS
    return out


@PROPERTY
@given(raw=st.binary(max_size=2000), kind=st.sampled_from(["click", "transaction"]))
def test_arbitrary_bytes__never_raise_and_never_vanish(raw: bytes, kind: str) -> None:
    _accounted(raw, kind)


@PROPERTY
@given(doc=JSONISH | EVENTISH | st.lists(EVENTISH, max_size=4),
       kind=st.sampled_from(["click", "transaction"]))
def test_arbitrary_json_values__never_raise_and_each_element_is_accounted_for(
    doc: object, kind: str
) -> None:
    out = _accounted(orjson.dumps(doc), kind)
    if isinstance(doc, list) and doc:
        # one outcome per element, and rejections point at distinct, valid positions
        assert len(out.events) + len(out.rejects) == len(doc)
        idx = [r.index for r in out.rejects]
        assert all(i is not None and 0 <= i < len(doc) for i in idx)
        assert len(set(idx)) == len(idx)
    elif isinstance(doc, dict):
        assert len(out.events) + len(out.rejects) == 1
        assert all(r.index is None for r in out.rejects)


@PROPERTY
@given(doc=EVENTISH)
def test_accepted_events__re_encode_and_decode_to_the_same_event(doc: dict[str, Any]) -> None:
    for kind in ("click", "transaction"):
        out = decode(doc, kind)
        for ev in out.events:
            again = only_event(decode(ev.model_dump(by_alias=True), kind))
            assert again == ev


VALID_CLICK = st.builds(
    click, event_id=st.sampled_from(["e-1", "e-2", " e-3 "]), customer_id=st.sampled_from(["c-1", 7, " c-2"]),
    ts=st.sampled_from([NOW_MS, NOW_MS - 1000, "2026-01-01", 1767225600, NOW_MS + 2 * HOUR_MS]),
    type=st.sampled_from(CLICK_TYPES))
VALID_TXN = st.builds(
    txn, amount=st.sampled_from([0, 1.5, 42]), currency=st.sampled_from(["EUR", "USD"]),
    ts=st.sampled_from([NOW_MS, "19990101", NOW_MS + 2 * HOUR_MS]))


@PROPERTY
@given(docs=st.lists(VALID_CLICK | VALID_TXN | EVENTISH | LEAVES, min_size=1, max_size=6),
       kind=st.sampled_from(["click", "transaction"]),
       currencies=st.sampled_from([None, Currencies.parse("EUR", "USD:0.5")]))
def test_envelope__decodes_as_its_elements_would_alone_at_their_index(
    docs: list[Any], kind: str, currencies: Currencies | None
) -> None:
    # a whole valid envelope takes pydantic-core's list path, any bad element the
    # element-by-element one: the outcome must not depend on which
    admission = Admission(currencies=currencies)
    out = decode(docs, kind, admission=admission)
    events, indices, rejects = [], [], []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            rejects.append((i, "not_an_object", f"element is {type(doc).__name__}", None))
            continue
        alone = decode(doc, kind, admission=admission)
        events += alone.events
        indices += [i] * len(alone.events)
        rejects += [(i, r.reason, r.detail, r.customer_id) for r in alone.rejects]
    assert out.events == events
    assert out.indices == indices
    assert sorted((r.index, r.reason, r.detail, r.customer_id) for r in out.rejects) == sorted(rejects)


# --------------------------------------------------------------------------- output records

SEGMENT_UPDATE_FIELDS = {"customer_id", "segment_id", "segment_name", "previous_segment_id",
                         "distance", "model_version", "event_ts", "processed_ts",
                         "reasons",  # issue 4: the features that moved the customer
                         "risk_band", "previous_risk_band", "value"}  # issue 19: customer value


def segment_update(**over: Any) -> SegmentUpdate:
    doc: dict[str, Any] = dict(
        customer_id="c1", segment_id=2, segment_name="Bargain hunters", previous_segment_id=None,
        distance=0.5, model_version=1, event_ts="2026-01-01T00:00:00.000Z",
        processed_ts="2026-01-01T00:00:00.004Z")
    doc.update(over)
    return SegmentUpdate(**doc)


def test_segment_update__has_exactly_the_documented_fields() -> None:
    assert set(SegmentUpdate.model_fields) == SEGMENT_UPDATE_FIELDS
    assert set(orjson.loads(segment_update().to_bytes())) == SEGMENT_UPDATE_FIELDS


def test_segment_update__forbids_extra_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        segment_update(confidence=0.9)


def test_segment_update__requires_previous_segment_id_even_when_none() -> None:
    doc = segment_update().model_dump()
    del doc["previous_segment_id"]
    with pytest.raises(ValidationError, match="previous_segment_id"):
        SegmentUpdate(**doc)


def test_segment_update__to_bytes_round_trips_through_json() -> None:
    rec = segment_update(previous_segment_id=4, distance=1.25)
    assert SegmentUpdate.model_validate_json(rec.to_bytes()) == rec


def test_segment_update__is_frozen() -> None:
    with pytest.raises(ValidationError):
        segment_update().segment_id = 3  # type: ignore[misc]


def dead_letter(original: bytes | None, key: bytes | None = b"c-1") -> DeadLetter:
    return DeadLetter.build(reason="not_utf8", detail="bytes are not UTF-8", topic="t", partition=3,
                            offset=99, key=key, original=original, index=2, customer_id="c-1")


@pytest.mark.parametrize(
    "original",
    [b'{"event_id": 1', b"\xff\xfe\x00\x80 not utf-8", bytes(range(256)), b""],
    ids=["json-ish", "non-utf8", "all-byte-values", "empty"],
)
def test_dead_letter__round_trips_the_original_bytes(original: bytes) -> None:
    dl = dead_letter(original)
    assert dl.original == original
    again = DeadLetter.model_validate_json(dl.to_bytes())
    assert again.original == original
    assert base64.b64decode(orjson.loads(dl.to_bytes())["original_b64"]) == original


def test_dead_letter__none_original_becomes_empty_bytes_and_records_the_source() -> None:
    dl = dead_letter(None, key=None)
    assert dl.original == b""
    assert (dl.source_topic, dl.source_partition, dl.source_offset) == ("t", 3, 99)
    assert (dl.source_key, dl.index, dl.customer_id) == (None, 2, "c-1")
    assert dl.dead_lettered_at.endswith("Z")


def test_dead_letter__non_utf8_key_is_kept_readable() -> None:
    dl = dead_letter(b"x", key=b"c-\xff")
    assert dl.source_key == "c-\ufffd"


def test_dead_letter__from_a_real_rejection_keeps_reason_detail_and_index() -> None:
    raw = orjson.dumps([click(), click(type="teleport")])
    out = decode(raw)
    assert len(out.events) == 1 and len(out.rejects) == 1
    r = out.rejects[0]
    dl = DeadLetter.build(reason=r.reason, detail=r.detail, topic="clicks", partition=0, offset=1,
                          key=b"c-1", original=raw, index=r.index, customer_id=r.customer_id)
    assert (dl.reason, dl.index, dl.customer_id) == ("invalid_field", 1, "c-1")
    assert "type" in dl.detail
    assert dl.original == raw


def test_batched_envelope__reports_each_kept_event_at_its_element_position() -> None:
    bad = click(event_id="e-bad")
    del bad["ts"]
    raw = orjson.dumps([bad, click(event_id="e-1"), click(event_id="e-2")])
    out = decode_message(raw, "click", max_bytes=65536, now_ms=NOW_MS)
    assert [e.event_id for e in out.events] == ["e-1", "e-2"]
    assert out.indices == [1, 2]


# --------------------------------------------------------------------------- old history, currencies


@pytest.mark.parametrize("ts", ["19970101", "19970101000000", "1997-01-01", "1997-01-01T00:00:00Z"])
def test_compact_and_iso_1997_dates__are_dates_and_pass_a_lowered_earliest_time(ts: str) -> None:
    earliest = Admission(earliest_ms=parse_ts("1990-01-01"))
    assert only_event(decode(click(ts=ts), admission=earliest)).ts_ms == 852_076_800_000
    r = only_reject(decode(click(ts=ts)))  # the default earliest time is 2000-01-01
    assert r.reason == "too_old" and "STREAMSEG_EARLIEST_EVENT_TIME" in r.detail


def test_compact_date_that_is_no_date__is_invalid_not_an_epoch() -> None:
    r = only_reject(decode(click(ts="19971332")))
    assert r.reason == "invalid_field" and "compact ISO-8601" in r.detail


def test_money_in_another_currency__is_converted_and_an_unknown_one_refused() -> None:
    money = Admission(currencies=Currencies.parse("EUR", "USD:0.5"))
    ev = only_event(decode(txn(amount=10.0, currency="USD", discount_amount=4.0), "transaction",
                           admission=money))
    assert isinstance(ev, TransactionEvent)
    assert (ev.amount, ev.discount_amount, ev.currency) == (5.0, 2.0, "EUR")
    r = only_reject(decode(txn(currency="JPY"), "transaction", admission=money))
    assert (r.reason, r.customer_id) == ("unknown_currency", "c-1")
    assert "'JPY'" in r.detail and "EUR (and USD by the rate table)" in r.detail


@pytest.mark.parametrize("spec", ["USD", "USD:0", "USD:-1", "USD:x", "DOLLAR:1", "USD:nan"])
def test_bad_rate_table__is_refused_naming_the_entry(spec: str) -> None:
    with pytest.raises(ValueError, match=rf"got {re.escape(repr(spec))}"):
        Currencies.parse("EUR", spec)
