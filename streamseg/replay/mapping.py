"""File columns -> the input contract of :mod:`streamseg.events.models`.

A :class:`Mapping` says which column feeds which contract field
(``--map customer_id=cust,ts=date,amount=dollar_value``; unmapped fields are
read from the column of the same name, and so are mapped ones in a file that
lacks the mapped column, so one mapping serves several files) and which
constant fills a field the file lacks (``--default currency=USD``). Values are coerced the way history
exports need (numbers and booleans written as text, dates, epoch numbers,
category lists) and then judged by the same pydantic models the worker uses,
so a value coercion cannot fix is refused with the worker's own reason.

Rows without an event id (no such column, or an empty value) get a derived
one, ``r:<first 16 hex digits of the file's SHA-256>:<row number>``: two equal
rows of one file stay two events, and replaying the same file again changes
nothing.

>>> m = Mapping.parse("customer_id=cust,ts=date,amount=dollars", "currency=USD")
>>> m.payload({"cust": "42", "date": "2026-01-02", "dollars": "9.50"}, "transaction", "r:ab:1")
{'event_id': 'r:ab:1', 'customer_id': '42', 'ts': '2026-01-02', 'amount': 9.5, 'currency': 'USD'}
"""

from __future__ import annotations

import re
from collections.abc import Collection
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

import orjson

from streamseg.errors import ConfigError
from streamseg.events.models import COMPACT_FORMATS, ClickEvent, TransactionEvent

EventKind = Literal["click", "transaction"]
KINDS: tuple[EventKind, ...] = ("transaction", "click")


def contract_fields(model: type[ClickEvent] | type[TransactionEvent], *,
                    required: bool = False) -> tuple[str, ...]:
    """The JSON field names of one event model (only the required ones if asked), in order."""
    return tuple(f.alias or name for name, f in model.model_fields.items()
                 if name != "kind" and (f.is_required() or not required))


FIELDS: dict[EventKind, tuple[str, ...]] = {
    "click": contract_fields(ClickEvent),
    "transaction": contract_fields(TransactionEvent),
}
#: Required fields a file must provide (the event id can be derived).
REQUIRED: dict[EventKind, tuple[str, ...]] = {
    "click": tuple(f for f in contract_fields(ClickEvent, required=True) if f != "event_id"),
    "transaction": tuple(f for f in contract_fields(TransactionEvent, required=True) if f != "event_id"),
}
ALL_FIELDS = frozenset(FIELDS["click"]) | frozenset(FIELDS["transaction"])
_FLOATS = frozenset({"amount", "discount_amount", "price"})
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_LIST_SPLIT = re.compile(r"[,;|]")


def parse_pairs(text: str | None, what: str) -> dict[str, str]:
    """``a=b,c=d`` -> ``{"a": "b", "c": "d"}``, every key a contract field.

    >>> parse_pairs("customer_id=cust, ts=date", "--map")
    {'customer_id': 'cust', 'ts': 'date'}
    """
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"{what}: expected field=value pairs separated by commas, got {part!r}")
        if key not in ALL_FIELDS:
            raise ConfigError(f"{what}: {key!r} is not an event field; fields: {', '.join(sorted(ALL_FIELDS))}")
        if key in out:
            raise ConfigError(f"{what}: {key!r} is given twice")
        out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class Mapping:
    """Which column feeds which contract field, and constants for absent fields."""

    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    #: a :func:`datetime.strptime` format the ts column is read with (``--ts-format``)
    ts_format: str | None = None

    @classmethod
    def parse(cls, mapping: str | None, defaults: str | None = None,
              ts_format: str | None = None) -> Mapping:
        if ts_format is not None and "%" not in ts_format:
            raise ConfigError(f"--ts-format takes a strptime format such as %Y%m%d or "
                              f"'%d/%m/%Y %H:%M', got {ts_format!r}")
        return cls(parse_pairs(mapping, "--map"), parse_pairs(defaults, "--default"), ts_format)

    def column(self, name: str, columns: Collection[str] | None = None) -> str:
        """The column that feeds contract field ``name``: the mapped one if the file has it."""
        col = self.columns.get(name, name)
        return name if columns is not None and col not in columns else col

    def infer_kind(self, columns: Collection[str]) -> EventKind | None:
        """transaction if the file has an amount, click if it has a type and a session id.

        >>> Mapping().infer_kind(["event_id", "customer_id", "ts", "type", "session_id"])
        'click'
        """
        has = {f for f in ALL_FIELDS if self.column(f, columns) in columns or f in self.defaults}
        is_txn = "amount" in has
        is_click = {"type", "session_id"} <= has
        if is_txn == is_click:
            return None
        return "transaction" if is_txn else "click"

    def check_columns(self, kind: EventKind, columns: Collection[str], where: str) -> None:
        """Fail fast when a file lacks a column every row needs (a typo would reject every row).

        >>> Mapping.parse("ts=date").check_columns("click", ["customer_id", "time", "type"], "f.csv")
        Traceback (most recent call last):
        ...
        streamseg.errors.ConfigError: f.csv: no column date (for ts), no column session_id (for session_id); the columns are: customer_id, time, type; map them with --map FIELD=COLUMN or give a --default FIELD=VALUE
        """
        missing = [f"no column {col} (for {name})" for name, col in self.columns.items()
                   if name in FIELDS[kind] and col not in columns and name not in columns]
        missing += [f"no column {name} (for {name})" for name in REQUIRED[kind]
                    if name not in self.columns and name not in self.defaults and name not in columns]
        if missing:
            raise ConfigError(f"{where}: {', '.join(missing)}; the columns are: "
                              f"{', '.join(columns) or '(none)'}; map them with --map FIELD=COLUMN "
                              "or give a --default FIELD=VALUE")

    def payload(self, row: MappingABC[str, object], kind: EventKind, derived_id: str) -> dict[str, object]:
        """The contract-shaped event of one row (not yet validated).

        Raises ValueError when the ts column does not match ``ts_format``.

        >>> Mapping(ts_format="%d/%m/%Y").payload({"ts": "31/12/1997"}, "click", "r:1")
        {'event_id': 'r:1', 'ts': 883526400000}
        """
        out: dict[str, object] = {}
        for name in FIELDS[kind]:
            value = _present(row.get(self.column(name, row)))
            if value is None:
                value = self.defaults.get(name)
            if value is not None:
                out[name] = (strptime_ms(value, self.ts_format) if name == "ts" and self.ts_format
                             else coerce(name, value))
        if "event_id" not in out:
            out = {"event_id": derived_id, **out}
        return out


def _present(value: object) -> object:
    """None for what a file means as "no value": null, empty or blank text."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, float) and value != value:  # NaN: pandas' missing value
        return None
    return value


def coerce(name: str, value: object) -> object:
    """Best effort towards the model's type; what cannot be coerced is left for the model to refuse.

    >>> coerce("amount", "12.50"), coerce("items", "2"), coerce("refund", "yes"), coerce("ts", "1767225600")
    (12.5, 2, True, 1767225600)
    >>> coerce("categories", "shoes|bags"), coerce("customer_id", 42.0), coerce("amount", "lots")
    (['shoes', 'bags'], '42', 'lots')
    """
    if name == "ts":
        return _ts(value)
    if name in _FLOATS:
        return _float(value)
    if name == "items":
        return _int(value)
    if name == "refund":
        return _bool(value)
    if name == "categories":
        return _list(value)
    return _text(value)


def _ts(value: object) -> object:
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(round(dt.timestamp() * 1000))
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value):
        if value.isdigit() and len(value) in COMPACT_FORMATS:
            return value  # 19970101: a compact ISO-8601 date, not an epoch
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def strptime_ms(value: object, fmt: str) -> object:
    """Epoch ms of ``value`` read with ``fmt`` (UTC unless the format has a zone); typed
    dates and times (Parquet) are taken as they are."""
    if isinstance(value, date | datetime):
        return _ts(value)
    text = str(value).strip()
    try:
        dt = datetime.strptime(text, fmt)
    except ValueError:
        raise ValueError(f"ts {text[:40]!r} does not match --ts-format {fmt!r}") from None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return int(round(dt.timestamp() * 1000))


def _float(value: object) -> object:
    if isinstance(value, Decimal) or (isinstance(value, int) and not isinstance(value, bool)):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return value


def _int(value: object) -> object:
    if isinstance(value, str) and _NUMBER.match(value):
        value = float(value)
    if isinstance(value, float | Decimal) and float(value).is_integer():
        return int(value)
    return value


def _bool(value: object) -> object:
    if isinstance(value, str):
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def _list(value: object) -> object:
    if isinstance(value, str):
        if value.startswith("["):
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                return value
        return [c.strip() for c in _LIST_SPLIT.split(value) if c.strip()]
    return value


def _text(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id column that a data frame turned into floats
    if isinstance(value, int | float | Decimal):
        return str(value)
    return value
