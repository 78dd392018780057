"""Rows out of history files: CSV (any delimiter, header or not), JSON Lines, Parquet.

Readers only split a file into rows of ``column -> value``; they neither map
nor validate (that is :mod:`streamseg.replay.mapping` and the event models).
A record that cannot even be split (a JSON line that is not JSON, a CSV row
with more fields than the header) comes out as a :class:`RawRow` carrying an
error, so the caller can dead-letter it: nothing is skipped silently.

Row numbers identify a row for derived event ids and dead letters: the 1-based
line number for JSON Lines, the 1-based data record (header not counted) for
CSV, the 1-based row for Parquet. ``.gz`` CSV and JSON Lines are read as is.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "orders.csv"
>>> _ = path.write_text("order;cust;date;dollars\\no-1;42;2026-01-02;9.5\\n")
>>> table = open_table(path)
>>> table.columns, [(r.number, r.fields) for r in table]
(['order', 'cust', 'date', 'dollars'], [(1, {'order': 'o-1', 'cust': '42', 'date': '2026-01-02', 'dollars': '9.5'})])
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

import orjson

from streamseg.errors import ConfigError

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")
_BY_SUFFIX: dict[str, Format] = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".psv": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}
#: Delimiters the sniffer may pick; anything else needs ``--delimiter``.
SNIFF_DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
PARQUET_BATCH_ROWS = 8192
#: What undecodable bytes become when reading CSV text (rows holding it are refused).
_REPLACED = "\ufffd"


@dataclass(frozen=True, slots=True)
class RawRow:
    """One record of a file: its columns, or why it could not be read."""

    number: int
    fields: dict[str, object] | None
    raw: bytes | list[str] | dict[str, object]
    error: tuple[str, str] | None = None  # (reason, detail)

    @property
    def original(self) -> bytes:
        """The record as dead letters carry it: the line itself, or its fields as JSON."""
        if isinstance(self.raw, bytes):
            return self.raw
        return orjson.dumps(self.raw, default=str)


class Table:
    """An opened history file: its column names (if known) and its rows, once."""

    def __init__(self, path: Path, fmt: Format, columns: list[str] | None,
                 rows: Iterator[RawRow], position: IO[bytes] | None, size: int,
                 total_rows: int | None = None) -> None:
        self.path = path
        self.format = fmt
        self.columns = columns
        self.total_rows = total_rows
        self.size = size
        self._rows = rows
        self._position = position

    def __iter__(self) -> Iterator[RawRow]:
        return self._rows

    def bytes_read(self, rows_done: int) -> int:
        """How far into the stored file reading has got (for progress; approximate)."""
        if self._position is None:  # Parquet: by rows, whose total the footer tells
            return self.size * rows_done // max(1, self.total_rows or 1)
        if self._position.closed:
            return self.size
        return self._position.tell()


def detect_format(path: Path) -> Format:
    """The format a file's name implies (``.gz`` looks at the suffix before it)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = _BY_SUFFIX.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise ConfigError(f"cannot tell the format of {path.name} from its name: "
                          f"pass --format {'|'.join(FORMATS)}")
    return fmt


def open_table(path: Path, fmt: Format | None = None, *, delimiter: str | None = None,
               header: bool | None = None, expected: Collection[str] = ()) -> Table:
    """Open ``path`` for reading rows.

    ``header``: True/False to say whether a CSV's first record names the
    columns, None to decide: a first record holding every ``expected`` column
    name is a header, otherwise :class:`csv.Sniffer` guesses.
    """
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    fmt = fmt or detect_format(path)
    if fmt == "csv":
        return _csv_table(path, delimiter, header, expected)
    if fmt == "jsonl":
        return _jsonl_table(path)
    return _parquet_table(path)


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """The stream to read, and the underlying file whose position shows progress."""
    raw = path.open("rb")
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw)), raw
    return raw, raw


# --- CSV ----------------------------------------------------------------------


def sniff_dialect(sample: str, delimiter: str | None) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect: the given delimiter, or the sniffer's pick among ``,;\\t|``.

    >>> sniff_dialect("a;b;c\\n1;2;3\\n", None).delimiter
    ';'
    """
    if delimiter is not None:
        if len(delimiter) != 1:
            raise ConfigError(f"--delimiter must be one character, got {delimiter!r}")

        class Given(csv.excel):
            pass

        Given.delimiter = delimiter
        return Given
    try:
        return csv.Sniffer().sniff(sample, delimiters=SNIFF_DELIMITERS)
    except csv.Error:
        return csv.excel  # one column, or nothing to go on: plain commas


def has_header(sample: str, first: list[str], expected: Collection[str],
               dialect: type[csv.Dialect] | csv.Dialect = csv.excel) -> bool:
    """Whether the first record names the columns: it holds the expected names, or the sniffer says so.

    >>> has_header("id,ts\\n1,2\\n", ["id", "ts"], expected=["ts"])
    True
    >>> has_header("1,2\\n3,4\\n", ["1", "2"], expected=["ts"])
    False
    >>> has_header("a;b\\n1;2\\n", ["a", "b"], expected=[], dialect=sniff_dialect("a;b\\n", None))
    True
    """
    names = {c.strip() for c in first}
    if expected and set(expected) <= names:
        return True
    try:
        return _KnownDialectSniffer(dialect).has_header(sample)
    except csv.Error:
        return False


class _KnownDialectSniffer(csv.Sniffer):
    """``has_header`` re-sniffs the dialect and gives up on ragged samples; use the one we have."""

    def __init__(self, dialect: type[csv.Dialect] | csv.Dialect) -> None:
        super().__init__()
        self._dialect = dialect

    def sniff(self, sample: str, delimiters: str | None = None) -> type[csv.Dialect]:
        return self._dialect  # type: ignore[return-value]


def _csv_table(path: Path, delimiter: str | None, header: bool | None,
               expected: Collection[str]) -> Table:
    stream, position = _open_binary(path)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    sample = text.read(SNIFF_BYTES)
    if len(sample) == SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]  # the sniffer wants whole lines
    dialect = sniff_dialect(sample, delimiter)
    text.seek(0)
    reader = csv.reader(text, dialect)
    first = next(reader, None)
    if first is None:
        text.close()
        position.close()
        return Table(path, "csv", [], iter(()), None, path.stat().st_size, 0)
    named = has_header(sample, first, expected, dialect) if header is None else header
    columns = [c.strip() for c in first] if named else [str(i + 1) for i in range(len(first))]
    pending = None if named else first
    return Table(path, "csv", columns, _csv_rows(text, position, reader, columns, pending),
                 position, path.stat().st_size)


def _csv_rows(text: IO[str], raw: IO[bytes], reader: Iterator[list[str]], columns: list[str],
              first: list[str] | None) -> Iterator[RawRow]:
    number = 0
    with raw, text:
        records = reader if first is None else _chain([first], reader)
        for rec in records:
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue  # a blank line is no record
            number += 1
            if len(rec) > len(columns):
                yield RawRow(number, None, rec, ("malformed_row",
                             f"{len(rec)} fields, the header has {len(columns)}"))
                continue
            if any(_REPLACED in v for v in rec):
                yield RawRow(number, None, rec, ("not_utf8", "the row has bytes that are not UTF-8"))
                continue
            fields: dict[str, object] = dict(zip(columns, rec, strict=False))
            yield RawRow(number, fields, fields)


def _chain(head: list[list[str]], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield from head
    yield from rest


# --- JSON Lines -------------------------------------------------------------------


def _jsonl_table(path: Path) -> Table:
    stream, position = _open_binary(path)
    return Table(path, "jsonl", _jsonl_columns(path), _jsonl_rows(stream, position), position,
                 path.stat().st_size)


def _jsonl_columns(path: Path) -> list[str] | None:
    """The keys of the first object: enough to infer the event kind and check a mapping."""
    stream, raw = _open_binary(path)
    with raw, stream:
        for line in stream:
            if line.strip():
                with contextlib.suppress(orjson.JSONDecodeError):
                    doc = orjson.loads(line)
                    return list(doc) if isinstance(doc, dict) else None
                return None
    return None


def _jsonl_rows(stream: IO[bytes], raw: IO[bytes]) -> Iterator[RawRow]:
    with raw, stream:
        for number, line in enumerate(stream, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield RawRow(number, None, line, _json_error(line, exc))
                continue
            if not isinstance(doc, dict):
                yield RawRow(number, None, line,
                             ("not_an_object", f"JSON value is {type(doc).__name__}, expected an object"))
                continue
            yield RawRow(number, doc, line)


def _json_error(line: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str]:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return ("not_utf8", f"bytes are not UTF-8 ({uexc.reason} at byte {uexc.start})")
    return ("malformed_json", f"invalid JSON: {exc}")


# --- Parquet -------------------------------------------------------------------------


def _parquet_table(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError with a good message
        raise ConfigError(f"{path} is not a readable Parquet file: {exc}") from exc
    return Table(path, "parquet", list(pf.schema_arrow.names), _parquet_rows(pf), None,
                 path.stat().st_size, pf.metadata.num_rows)


def _parquet_rows(pf: object) -> Iterator[RawRow]:
    number = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS):  # type: ignore[attr-defined]
        for row in batch.to_pylist():
            number += 1
            yield RawRow(number, row, row)
