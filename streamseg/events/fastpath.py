"""The event pydantic would build from an ordinary, well-formed document, at a fifth of the cost.

Validating one event with pydantic costs about 14 us, mostly in the Python
callbacks (``parse_ts``, integer customer ids) and whitespace stripping; at
tens of thousands of events per second that is the largest single cost of a
batch. Nearly every real event is plain: string ids without surrounding
whitespace, an epoch-millisecond ``ts``, floats in range. For those,
:func:`fast_event` checks the same constraints the models declare and builds
the model instance directly. Anything else -- a wrong type, surrounding
whitespace, a non-ASCII edge character, ``kind`` given explicitly, integer
customer ids -- returns None and pydantic decides, error messages included.
``tests/unit/test_fastpath.py`` checks with hypothesis that a non-None result
always equals pydantic's.

>>> ev = fast_event({"event_id": "e1", "customer_id": "c1", "ts": 1767225600000,
...                  "type": "login", "session_id": "s1"}, "click")
>>> ev == ClickEvent.model_validate({"event_id": "e1", "customer_id": "c1", "ts": 1767225600000,
...                                  "type": "login", "session_id": "s1"})
True
>>> fast_event({"event_id": " e1", "customer_id": "c1", "ts": 1, "type": "login",
...             "session_id": "s1"}, "click") is None
True
"""

from __future__ import annotations

from typing import Any

from streamseg.events.models import (
    CLICK_TYPES,
    MAX_TS_MS,
    MIN_TS_MS,
    ClickEvent,
    Event,
    TransactionEvent,
    parse_ts,
)

_CLICK_TYPES = frozenset(CLICK_TYPES)
_LABELS = ("device", "channel", "category", "product_id")
_new = object.__new__
_set = object.__setattr__


def _plain(v: object, longest: int) -> bool:
    """A non-empty str that whitespace stripping leaves unchanged (ASCII, visible ends)."""
    return (type(v) is str and 0 < len(v) <= longest  # type: ignore[arg-type]
            and " " < v[0] < "\x7f" and " " < v[-1] < "\x7f")  # type: ignore[index]


def _label(v: object) -> bool:
    return v == "" or _plain(v, 200)


def _money(v: object) -> bool:
    return (type(v) is float or type(v) is int) and 0 <= v <= 1e9  # type: ignore[operator]


def _ts(v: object) -> int | None:
    if type(v) is int and MIN_TS_MS <= v < MAX_TS_MS:
        return v
    try:
        return parse_ts(v)  # what the model's BeforeValidator does; errors are pydantic's to word
    except Exception:
        return None


def _input_keys(cls: type[Event]) -> dict[str, str]:
    """Input key (the alias where there is one) -> field name."""
    return {(f.alias or name): name for name, f in cls.model_fields.items()}


_KEYS: dict[type[Event], dict[str, str]] = {c: _input_keys(c) for c in (ClickEvent, TransactionEvent)}


def _build(cls: type[Event], values: dict[str, Any], doc: dict[str, Any]) -> Event:
    keys = _KEYS[cls]
    fields_set = {keys[k] for k in doc if k in keys}  # what pydantic records as given
    event = _new(cls)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", fields_set)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def fast_event(doc: dict[str, Any], kind: str) -> Event | None:
    """The validated event for ``doc``, or None when pydantic must look at it."""
    if "kind" in doc:
        return None
    event_id, cid = doc.get("event_id"), doc.get("customer_id")
    if not (_plain(event_id, 200) and _plain(cid, 128) and cid.isprintable()):  # type: ignore[union-attr]
        return None
    ts = _ts(doc.get("ts"))
    if ts is None:
        return None
    if kind == "click":
        return _click(doc, event_id, cid, ts)
    if kind == "transaction":
        return _transaction(doc, event_id, cid, ts)
    return None


def _click(doc: dict[str, Any], event_id: Any, cid: Any, ts: int) -> Event | None:
    typ, session = doc.get("type"), doc.get("session_id")
    if not (type(typ) is str and typ in _CLICK_TYPES and _plain(session, 200)):
        return None
    values: dict[str, Any] = {"event_id": event_id, "customer_id": cid, "ts_ms": ts,
                              "kind": "click", "type": typ, "session_id": session}
    for name in _LABELS:
        v = doc.get(name)
        if v is not None and not _label(v):
            return None
        values[name] = v
    price = doc.get("price")
    if price is not None:
        if not _money(price):
            return None
        price = float(price)
    values["price"] = price
    return _build(ClickEvent, values, doc)


def _transaction(doc: dict[str, Any], event_id: Any, cid: Any, ts: int) -> Event | None:
    amount: Any = doc.get("amount")
    currency = doc.get("currency")
    items = doc.get("items", 1)
    categories = doc.get("categories", [])
    discount = doc.get("discount_amount", 0.0)
    refund = doc.get("refund", False)
    if not (_money(amount) and _plain(currency, 3) and len(currency) == 3  # type: ignore[arg-type]
            and type(items) is int and 0 <= items <= 100_000
            and type(categories) is list and len(categories) <= 100
            and all(_label(c) for c in categories)
            and _money(discount) and type(refund) is bool):
        return None
    values: dict[str, Any] = {"event_id": event_id, "customer_id": cid, "ts_ms": ts,
                              "kind": "transaction", "amount": float(amount), "currency": currency,
                              "items": items, "categories": list(categories),
                              "discount_amount": float(discount), "refund": refund}
    return _build(TransactionEvent, values, doc)
