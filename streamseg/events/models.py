"""The input contract: one JSON object per Kafka message, key = customer_id.

Unknown extra fields are ignored; missing or invalid required fields are not.
``ts`` is ISO-8601 (a zone is assumed UTC when absent) or a Unix epoch number:
values below 10^11 are read as seconds, larger ones as milliseconds.

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

#: 2000-01-01T00:00:00Z; anything earlier is treated as a broken clock.
MIN_TS_MS = 946_684_800_000
#: 2100-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000
_SECONDS_BELOW = 10**11


def parse_ts(value: object) -> int:
    """Epoch milliseconds from ISO-8601 text or an epoch number (s or ms).

    >>> parse_ts("2026-01-01"), parse_ts(1767225600), parse_ts(1767225600000)
    (1767225600000, 1767225600000, 1767225600000)
    """
    if isinstance(value, bool):
        raise ValueError("ts must be ISO-8601 text or epoch seconds/milliseconds, not a boolean")
    if isinstance(value, int | float):
        # compare before any float(): a 400-digit int would raise OverflowError,
        # which pydantic does not turn into a validation error
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("ts must be a finite number")
        if abs(value) >= 10**16:
            raise ValueError("ts must lie between 2000-01-01 and 2100-01-01")
        ms = float(value) * 1000.0 if abs(value) < _SECONDS_BELOW else float(value)
    elif isinstance(value, str):
        ms = _parse_iso(value)
    else:
        raise ValueError("ts must be ISO-8601 text or epoch seconds/milliseconds")
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise ValueError("ts must lie between 2000-01-01 and 2100-01-01")
    return int(round(ms))


def _parse_iso(text: str) -> float:
    text = text.strip()
    if text.isdigit():
        return parse_ts(int(text))
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
CustomerId = Annotated[
    str, BeforeValidator(_customer_id), Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")
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
