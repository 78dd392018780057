"""Hostile Kafka message values, generated from a seed, and the accounting they must obey.

Shared by the in-process fuzz tests (:mod:`tests.unit.test_fuzz`, 100k inputs)
and the worker fuzz test (:mod:`tests.integration.test_resilience`). Inputs are
valid events and envelopes bent every way a producer gets them wrong:
truncated or byte-flipped JSON, deep nesting, huge strings, wrong types,
NaN/Infinity literals, timestamps far in the past or future, non-UTF-8 bytes,
envelopes mixing good and bad elements, random binary, and values far larger
than any limit (up to 5 MB: what crashed workers when a dead letter copied them whole).

Whatever the input, a decoder must account for every element: a message that
is not a JSON array with 1..MAX_EVENTS_PER_MESSAGE elements has one outcome (one
event or one rejection); an array has one per element, by index.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from streamseg.events.decode import MAX_EVENTS_PER_MESSAGE, EventKind
from streamseg.events.models import CLICK_TYPES
from streamseg.timeunits import DAY_MS, HOUR_MS

NOW_MS = 1_767_225_600_000  # 2026-01-01: fixed so every run sees the same inputs
MAX_BYTES = 64 * 1024
#: every reason a decoder or the engine may give (a new one must be added on purpose)
REASONS = {"empty", "too_large", "malformed_json", "not_utf8", "not_an_object", "missing_field",
           "invalid_field", "future_event", "too_old", "unknown_currency", "unknown_topic",
           "late_event", "processing_error"}


@dataclass(frozen=True, slots=True)
class FuzzInput:
    kind: EventKind
    raw: bytes | None


def envelope_size(raw: bytes | None, max_bytes: int = MAX_BYTES) -> int | None:
    """Elements of a batched envelope (a JSON array of 1..MAX elements), else None."""
    if not raw or len(raw) > max_bytes:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return len(doc) if isinstance(doc, list) and 0 < len(doc) <= MAX_EVENTS_PER_MESSAGE else None


def positions(raw: bytes | None, max_bytes: int = MAX_BYTES) -> list[int | None]:
    """The envelope index of each outcome the message must produce ([None] if not an envelope)."""
    n = envelope_size(raw, max_bytes)
    return [None] if n is None else list(range(n))


def fuzz_inputs(seed: int, n: int, *, large: bool = True) -> Iterator[FuzzInput]:
    """``n`` hostile message values, the same for the same seed; ``large``: some of them
    from 64 KiB to 5 MB (:data:`LARGE_VALUES`), else those are left out."""
    rng = random.Random(seed)
    for _ in range(n):
        kind: EventKind = _pick(rng, ("click", "transaction"))
        raw = _message(rng, kind)
        if not large and raw is not None and len(raw) > 2 * MAX_BYTES:
            raw = raw[:MAX_BYTES + 1]
        yield FuzzInput(kind, raw)


# --- building blocks ------------------------------------------------------------------


def _deep(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def _pick(rng: random.Random, seq: Any) -> Any:
    return seq[int(rng.random() * len(seq))]


def _int(rng: random.Random, n: int) -> int:
    """0 <= i < n, cheaper than ``randrange`` (which dominates generation time)."""
    return int(rng.random() * n)


def click(rng: random.Random) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"e{_int(rng, 10**6)}", "customer_id": f"c{_int(rng, 500)}",
        "ts": NOW_MS - _int(rng, 20 * DAY_MS), "type": _pick(rng, CLICK_TYPES),
        "session_id": f"s{_int(rng, 10**4)}",
    }
    for name in ("device", "channel", "category", "product_id"):
        if rng.random() < 0.5:
            ev[name] = _pick(rng, ("web", "ios", "seo", "shoes", "p-1", ""))
    if rng.random() < 0.3:
        ev["price"] = round(rng.uniform(0, 500), 2)
    return ev


def transaction(rng: random.Random) -> dict[str, Any]:
    return {
        "event_id": f"o{_int(rng, 10**6)}",
        "customer_id": _int(rng, 500) if rng.random() < 0.2 else f"c{_int(rng, 500)}",  # ints are ok
        "ts": NOW_MS - _int(rng, 20 * DAY_MS), "amount": round(rng.uniform(0, 900), 2),
        "currency": "EUR" if rng.random() < 0.98 else "XTS", "items": 1 + _int(rng, 8), "refund": rng.random() < 0.1,
        "categories": rng.sample(["shoes", "bags", "toys", "food"], _int(rng, 3)),
        "discount_amount": round(rng.uniform(0, 20), 2),
    }


#: JSON values a field should not (or only just) accept
HOSTILE_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, -1e308, 1e308, 2**63 - 1, -(2**63), "", " ", "\t\n",
    "x" * 199, "x" * 200, "x" * 201, "x" * 5_000, "\x00", "a\x1fb", "☃" * 50, "\ud7ff",
    [], {}, [1, "2", None], {"a": {"b": {"c": 1}}}, _deep(3), _deep(40),
    "NaN", "Infinity", "-Infinity", "1e400", "12.5", "0x10",
    # timestamps: far past, far future, edges, malformed
    0, -1, 10**15, 10**16, 1e20, 946_684_799_999, 946_684_800_000, 4_102_444_800_000,
    NOW_MS + 2 * HOUR_MS, NOW_MS + 10 * 365 * DAY_MS, NOW_MS // 1000, NOW_MS / 1000 + 0.5,
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-13-45", "2026-01-01",
    "2026-01-01T00:00:00+14:00", str(NOW_MS), "  1767225600  ", "yesterday",
)


def hostile_value(rng: random.Random) -> Any:
    return _pick(rng, HOSTILE_VALUES)


def mutate_event(rng: random.Random, ev: dict[str, Any]) -> dict[str, Any]:
    ev = dict(ev)
    for _ in range(1 + _int(rng, 3)):
        field = _pick(rng, [*ev, "junk"])
        roll = rng.random()
        if roll < 0.2:
            ev.pop(field, None)
        elif roll < 0.9:
            ev[field] = hostile_value(rng)
        else:
            ev[field] = {"nested": _deep(1 + _int(rng, 29), hostile_value(rng))}
    return ev


def _element(rng: random.Random, kind: EventKind) -> Any:
    roll = rng.random()
    good = click(rng) if (kind == "click") == (rng.random() < 0.9) else transaction(rng)
    if roll < 0.45:
        return good
    if roll < 0.9:
        return mutate_event(rng, good)
    return hostile_value(rng)


# --- whole messages ---------------------------------------------------------------------------


def _message(rng: random.Random, kind: EventKind) -> bytes | None:
    roll = rng.random()
    if roll < 0.30:
        return orjson.dumps(_element(rng, kind))
    if roll < 0.50:
        return orjson.dumps([_element(rng, kind) for _ in range(_int(rng, 12))])
    if roll < 0.80:
        return _byte_mutation(rng, orjson.dumps(_element(rng, kind) if rng.random() < 0.7 else
                                                [_element(rng, kind) for _ in range(3)]))
    if roll < 0.85:
        return _deep_text(rng, orjson.dumps(click(rng)))
    if roll < 0.90:
        return _number_literal(rng, orjson.dumps(transaction(rng)))
    if roll < 0.91:  # just under and over the size limit
        return orjson.dumps({**click(rng), "pad": "y" * _pick(rng, (MAX_BYTES - 400, MAX_BYTES))})
    if roll < 0.92:
        return _OVERSIZED_ENVELOPE
    if roll < 0.94:  # random binary: often not UTF-8, now and then valid JSON by chance
        return rng.randbytes(_int(rng, 3000))
    if roll < 0.945:  # far over the limit: shared objects, so 100k inputs stay small in memory
        return _pick(rng, LARGE_VALUES)
    return _pick(rng, (None, b"", b" ", b"null", b"42", b'"text"', b"true", b"[]", b"{}",
                       b"\xff\xfe\xfd", b"\xc3\x28", b"\xef\xbb\xbf{}", b"[1,]", b"{'a': 1}"))


def _byte_mutation(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    roll = rng.random()
    if roll < 0.4:  # truncated on the wire
        return bytes(data[: _int(rng, len(data))])
    if roll < 0.7:  # flipped bytes, often not UTF-8 any more
        for _ in range(1 + _int(rng, 3)):
            data[_int(rng, len(data))] = _int(rng, 256)
        return bytes(data)
    if roll < 0.85:  # invalid UTF-8 spliced inside a string
        at = data.find(b'"', _int(rng, len(data)))
        at = at + 1 if at >= 0 else len(data)
        return bytes(data[:at] + _pick(rng, (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88")) +
                     data[at:])
    return bytes(data) + _pick(rng, (b"}", b",", b"x", b" {}", b"\x00"))  # trailing garbage


def _deep_text(rng: random.Random, raw: bytes) -> bytes:
    depth = _pick(rng, (10, 500, 1_100, 5_000))
    if rng.random() < 0.5:
        return b"[" * depth + raw + b"]" * depth
    return raw[:-1] + b',"deep":' + b"[" * depth + b"1" + b"]" * depth + b"}"


def _number_literal(rng: random.Random, raw: bytes) -> bytes:
    """amount/ts written as literals JSON does not have, or that overflow a double."""
    doc = orjson.loads(raw)
    field = _pick(rng, ("amount", "ts", "discount_amount"))
    literal = _pick(rng, (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400",
                          b"123456789012345678901234567890"))
    marker = b"__literal__"
    doc[field] = marker.decode()
    return orjson.dumps(doc).replace(b'"' + marker + b'"', literal)


#: one element too many for an envelope, yet small enough in bytes
_OVERSIZED_ENVELOPE = orjson.dumps(list(range(MAX_EVENTS_PER_MESSAGE + 1)))


def _large(size: int, binary: bool) -> bytes:
    """A ``size``-byte value: random bytes, or a valid-looking event padded with text."""
    if binary:
        return random.Random(size).randbytes(size)
    head = orjson.dumps({**click(random.Random(size)), "pad": ""})[:-2]
    return head + b"x" * (size - len(head) - 2) + b'"}'


#: values just over the limit and up to 5 MB, JSON and binary
LARGE_VALUES = tuple(_large(size, binary) for size in (MAX_BYTES + 1, 800_000, 5_000_000)
                     for binary in (False, True))
