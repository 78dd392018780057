"""The input contract: one JSON object per Kafka message, key = customer_id.

Unknown extra fields are ignored; missing or invalid required fields are not.
``ts`` is ISO-8601 (a zone is assumed UTC when absent; the compact forms
``19970101`` and ``19970101120000`` too) or a Unix epoch number: values below
10^11 are read as seconds, larger ones as milliseconds. The models accept
1900-2100; how early an event may be is the decoder's check
(``STREAMSEG_EARLIEST_EVENT_TIME``, default 2000-01-01).

>>> ev = TransactionEvent.model_validate(
...     {"event_id": "o-1", "customer_id": "c-9", "ts": "2026-01-02T03:04:05Z",
...      "amount": 42.5, "currency": "EUR", "items": 2, "categories": ["shoes"]})
>>> ev.ts_ms, ev.refund
(1767323045000, False)
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

CLICK_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "email_open",
    "email_click",
    "login",
    "logout",
    "wishlist_add",
    "review",
)
ClickType = Literal[
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "email_open",
    "email_click",
    "login",
    "logout",
    "wishlist_add",
    "review",
]

#: 1900-01-01T00:00:00Z: the earliest time any event can carry (the accepted
#: range is narrower: ``STREAMSEG_EARLIEST_EVENT_TIME``, checked when decoding).
MIN_TS_MS = -2_208_988_800_000
#: 2000-01-01T00:00:00Z: the default earliest accepted event time; earlier is
#: usually a broken clock, unless history is replayed (then lower the setting).
DEFAULT_EARLIEST_MS = 946_684_800_000
#: 2100-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000
_SECONDS_BELOW = 10**11
_RANGE = "ts must lie between 1900-01-01 and 2100-01-01"
#: Digits-only text of these lengths is a compact ISO-8601 date (YYYYMMDD) or
#: date-time (YYYYMMDDhhmmss), not an epoch: as epoch seconds 8 digits fall in
#: 1970-1973, and 14 digits are past 2100 as milliseconds.
COMPACT_FORMATS = {8: "%Y%m%d", 14: "%Y%m%d%H%M%S"}


def parse_ts(value: object) -> int:
    """Epoch milliseconds from ISO-8601 text or an epoch number (s or ms).

    >>> parse_ts("2026-01-01"), parse_ts(1767225600), parse_ts(1767225600000)
    (1767225600000, 1767225600000, 1767225600000)
    >>> parse_ts("19970101"), parse_ts("19970101000000"), parse_ts("1997-01-01")
    (852076800000, 852076800000, 852076800000)
    """
    if type(value) is int and _SECONDS_BELOW <= value < MAX_TS_MS:  # the common case: epoch ms
        return value
    if isinstance(value, bool):
        raise ValueError("ts must be ISO-8601 text or epoch seconds/milliseconds, not a boolean")
    if isinstance(value, int | float):
        # compare before any float(): a 400-digit int would raise OverflowError,
        # which pydantic does not turn into a validation error
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("ts must be a finite number")
        if abs(value) >= 10**16:
            raise ValueError(_RANGE)
        ms = float(value) * 1000.0 if abs(value) < _SECONDS_BELOW else float(value)
    elif isinstance(value, str):
        ms = _parse_iso(value)
    else:
        raise ValueError("ts must be ISO-8601 text or epoch seconds/milliseconds")
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise ValueError(_RANGE)
    return int(round(ms))


def _parse_iso(text: str) -> float:
    text = text.strip()
    if text.isdigit():
        compact = COMPACT_FORMATS.get(len(text))
        if compact is None:
            return parse_ts(int(text))
        try:
            return datetime.strptime(text, compact).replace(tzinfo=UTC).timestamp() * 1000.0
        except ValueError:
            raise ValueError(f"ts {text!r} is not a compact ISO-8601 date "
                             f"({compact.replace('%', '')})") from None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"ts {text[:40]!r} is not ISO-8601") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000.0


def _customer_id(value: object) -> object:
    # Many systems key customers by integer; accept it, store it as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Ts = Annotated[int, BeforeValidator(parse_ts)]
# The constraints come before the BeforeValidator so pydantic-core checks them in
# its own str schema; after it, they run as Python validators, one per event.
CustomerId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$"), BeforeValidator(_customer_id)
]
EventId = Annotated[str, Field(min_length=1, max_length=200)]
Label = Annotated[str, Field(max_length=200)]
Money = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False, strict=True)]


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    event_id: EventId
    customer_id: CustomerId
    ts_ms: Ts = Field(alias="ts")


class ClickEvent(_Base):
    """A clickstream event (page views, cart actions, email engagement, ...)."""

    kind: Literal["click"] = "click"
    type: ClickType
    session_id: Annotated[str, Field(min_length=1, max_length=200)]
    device: Label | None = None
    channel: Label | None = None
    category: Label | None = None
    product_id: Label | None = None
    price: Money | None = None


class TransactionEvent(_Base):
    """An order (or, with ``refund: true``, a refund of ``amount``)."""

    kind: Literal["transaction"] = "transaction"
    amount: Money
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    items: Annotated[int, Field(ge=0, le=100_000, strict=True)] = 1
    categories: Annotated[list[Label], Field(max_length=100)] = []
    discount_amount: Money = 0.0
    refund: Annotated[bool, Field(strict=True)] = False


Event = ClickEvent | TransactionEvent


def iso(ts_ms: int) -> str:
    """ISO-8601 UTC text for epoch milliseconds (for output records).

    >>> iso(0), iso(1_700_000_000_123), iso(-1)
    ('1970-01-01T00:00:00.000Z', '2023-11-14T22:13:20.123Z', '1969-12-31T23:59:59.999Z')
    """
    # gmtime + strftime: a third of what datetime.isoformat costs, and every lookup formats two
    seconds, ms = divmod(int(ts_ms), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{ms:03d}Z"
