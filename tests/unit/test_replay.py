"""streamseg replay without a broker: readers, mapping, derived ids, ordering, summary (dry runs)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamseg.cli import main
from streamseg.errors import ConfigError
from streamseg.events.models import parse_ts
from streamseg.publish.records import DeadLetter
from streamseg.replay import Mapping, ReplayOptions, replay
from streamseg.replay.progress import Progress
from streamseg.replay.readers import detect_format, open_table
from streamseg.replay.runner import Loader, Pacer, ReplaySummary, file_digest, format_summary
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS as DAY

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TXN_MAP = "customer_id=cust,ts=date,amount=dollars"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def dry(paths: list[Path], **kw: object) -> ReplaySummary:
    opts = ReplayOptions(paths=tuple(paths), dry_run=True, progress=False, **kw)  # type: ignore[arg-type]
    return asyncio.run(replay(Settings(), opts))


def load(paths: list[Path], **kw: object) -> Loader:
    """A loader that has read ``paths``: its spools hold what would be sent."""
    opts = ReplayOptions(paths=tuple(paths), dry_run=True, progress=False, **kw)  # type: ignore[arg-type]
    loader = Loader(Settings(), opts, ReplaySummary())
    loader.load()
    return loader


def sent(loader: Loader) -> list[dict]:
    return [orjson.loads(v) for _, _, _, v in loader.events.in_time_order()]


def dead(loader: Loader) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for _, _, _, v in loader.dead.in_added_order()]


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_and_header__are_sniffed(tmp_path: Path, delimiter: str) -> None:
    rows = [["cust", "date", "dollars", "currency"], ["c1", "2026-01-02", "9.5", "EUR"],
            ["c2", "2026-01-03", "12", "EUR"]]
    path = write(tmp_path, "t.csv", "\n".join(delimiter.join(r) for r in rows) + "\n")
    table = open_table(path)
    assert table.columns == rows[0]
    assert [r.fields for r in table] == [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_csv_without_header__names_columns_by_position_and_keeps_the_first_row(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "c1;1767225600;9.5\nc2;1767225700;3\n")
    table = open_table(path, header=None, expected=["customer_id", "ts"])
    assert table.columns == ["1", "2", "3"]
    assert [r.number for r in table] == [1, 2]


def test_csv_header_override__no_header_reads_the_first_row_as_data(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "a,b\nc,d\n")
    assert [r.fields for r in open_table(path, header=False)] == [{"1": "a", "2": "b"}, {"1": "c", "2": "d"}]


def test_csv_delimiter_override__wins_over_the_sniffer(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "customer_id:ts\nc1:2026-01-01\n")
    table = open_table(path, delimiter=":", expected=["customer_id", "ts"])
    assert [r.fields for r in table] == [{"customer_id": "c1", "ts": "2026-01-01"}]


def test_csv_quoted_fields__keep_their_delimiters_and_newlines(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", 'id,cats,note\n1,"shoes,bags","two\nlines"\n2,toys,x\n')
    rows = list(open_table(path))
    assert rows[0].fields == {"id": "1", "cats": "shoes,bags", "note": "two\nlines"}
    assert rows[1].number == 2


def test_csv_row_with_too_many_fields__is_an_error_row_not_a_skip(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "a,b\n1,2\n1,2,3\n\n4,5\n")
    rows = list(open_table(path))
    assert [(r.number, r.error and r.error[0]) for r in rows] == [(1, None), (2, "malformed_row"), (3, None)]
    assert orjson.loads(rows[1].original) == ["1", "2", "3"]


def test_gzipped_csv__reads_like_plain_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"customer_id,ts\nc1,2026-01-01\n"))
    assert detect_format(path) == "csv"
    assert [r.fields for r in open_table(path)] == [{"customer_id": "c1", "ts": "2026-01-01"}]


def test_jsonl__numbers_rows_by_line_and_reports_bad_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "e.jsonl", '{"a": 1}\n\n{"a": \n[1]\n{"a": 2}\n')
    rows = list(open_table(path))
    assert [(r.number, r.error and r.error[0]) for r in rows] == [
        (1, None), (3, "malformed_json"), (4, "not_an_object"), (5, None)]
    assert rows[1].original == b'{"a": '  # the line itself, byte for byte


def test_parquet__yields_typed_values_and_knows_its_row_count(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"customer_id": ["c1", "c2"],
                             "ts": [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)],
                             "amount": [1.5, 2.0]}), path)
    table = open_table(path)
    assert table.columns == ["customer_id", "ts", "amount"] and table.total_rows == 2
    rows = list(table)
    assert rows[1].number == 2 and rows[1].fields is not None and rows[1].fields["amount"] == 2.0


def test_unknown_extension__asks_for_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--format"):
        detect_format(tmp_path / "history.dat")


def test_missing_file__is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        open_table(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- mapping and coercion


@pytest.mark.parametrize(("value", "expected_ms"), [
    ("2026-01-01", T0),  # a date alone is midnight UTC
    ("2026-01-01T01:00:00+01:00", T0),
    ("2026-01-01 00:00:00", T0),
    ("2026-01-01T00:00:00.250Z", T0 + 250),
    ("1767225600", T0),  # epoch seconds as text
    ("1767225600.5", T0 + 500),
    ("1767225600000", T0),  # epoch milliseconds as text
    (1767225600, T0),
    (datetime(2026, 1, 1), T0),  # naive datetimes (Parquet without zone) are UTC
    (date(2026, 1, 1), T0),
])
def test_every_documented_time_format__maps_to_the_same_instant(value: object, expected_ms: int) -> None:
    payload = Mapping().payload({"customer_id": "c", "ts": value, "amount": "1", "currency": "EUR"},
                                "transaction", "r:x:1")
    assert parse_ts(payload["ts"]) == expected_ms


def test_mapping__renames_coerces_fills_defaults_and_derives_the_id() -> None:
    m = Mapping.parse("customer_id=cust,ts=date,amount=dollars,refund=is_refund,categories=cats",
                      "currency=USD")
    row = {"cust": 42, "date": "2026-01-02", "dollars": "9.50", "is_refund": "FALSE",
           "cats": "shoes | bags", "items": "2.0", "discount_amount": "", "extra": "ignored"}
    assert m.payload(row, "transaction", "r:ab:7") == {
        "event_id": "r:ab:7", "customer_id": "42", "ts": "2026-01-02", "amount": 9.5,
        "currency": "USD", "items": 2, "categories": ["shoes", "bags"], "refund": False}


def test_mapping__a_mapped_column_missing_from_a_file_falls_back_to_the_field_name() -> None:
    m = Mapping.parse("customer_id=cust")
    assert m.payload({"customer_id": "c9", "ts": 1}, "click", "d")["customer_id"] == "c9"


def test_mapping__present_event_id_is_kept_and_empty_one_is_derived() -> None:
    row = {"customer_id": "c", "ts": "2026-01-01", "type": "login", "session_id": "s"}
    assert Mapping().payload({**row, "event_id": "e-1"}, "click", "r:x:1")["event_id"] == "e-1"
    assert Mapping().payload({**row, "event_id": " "}, "click", "r:x:1")["event_id"] == "r:x:1"


@pytest.mark.parametrize(("text", "error"), [
    ("customer_id", "field=value"),
    ("customer=cust", "not an event field"),
    ("ts=a,ts=b", "twice"),
])
def test_bad_map_option__is_a_clear_error(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        Mapping.parse(text)


def test_kind__is_inferred_from_columns_or_must_be_given() -> None:
    m = Mapping.parse("amount=dollars")
    assert m.infer_kind(["customer_id", "ts", "dollars", "currency"]) == "transaction"
    assert m.infer_kind(["customer_id", "ts", "type", "session_id"]) == "click"
    assert m.infer_kind(["customer_id", "ts"]) is None


def test_file_without_a_required_column__fails_before_reading_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "cust,date,dollars\nc1,2026-01-01,3\n")
    with pytest.raises(ConfigError, match=r"no column currency \(for currency\)"):
        dry([path], mapping=Mapping.parse(TXN_MAP))
    with pytest.raises(ConfigError, match=r"no column dolars \(for amount\)"):
        dry([path], kind="transaction",
            mapping=Mapping.parse("customer_id=cust,ts=date,amount=dolars", "currency=EUR"))


def test_csv_without_header_and_kind__needs_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "c1,1767225600,9.5\n")
    with pytest.raises(ConfigError, match="--kind"):
        dry([path])


# --------------------------------------------------------------------------- load: ids, order, rejects


def txn_csv(tmp_path: Path, rows: list[str], name: str = "t.csv") -> Path:
    return write(tmp_path, name, "cust,date,dollars,currency\n" + "".join(r + "\n" for r in rows))


def test_identical_rows__stay_two_events_with_ids_from_file_digest_and_row(tmp_path: Path) -> None:
    path = txn_csv(tmp_path, ["c1,2026-01-02,5,EUR", "c1,2026-01-02,5,EUR"])
    events = sent(load([path], mapping=Mapping.parse(TXN_MAP)))
    digest = file_digest(path)[:16]
    assert [e["event_id"] for e in events] == [f"r:{digest}:1", f"r:{digest}:2"]


def test_same_file_loaded_twice__gives_identical_records(tmp_path: Path) -> None:
    path = txn_csv(tmp_path, ["c1,2026-01-02,5,EUR", "c2,2026-01-01,7,EUR"])
    assert sent(load([path], mapping=Mapping.parse(TXN_MAP))) == \
        sent(load([path], mapping=Mapping.parse(TXN_MAP)))


def test_a_changed_file__gets_new_derived_ids(tmp_path: Path) -> None:
    a = sent(load([txn_csv(tmp_path, ["c1,2026-01-02,5,EUR"], "a.csv")], mapping=Mapping.parse(TXN_MAP)))
    b = sent(load([txn_csv(tmp_path, ["c1,2026-01-02,5,EUR", "c2,2026-01-02,5,EUR"], "b.csv")],
                  mapping=Mapping.parse(TXN_MAP)))
    assert a[0]["event_id"] != b[0]["event_id"]


def test_events__are_sent_in_event_time_order_with_ties_in_file_order_across_files(tmp_path: Path) -> None:
    txns = txn_csv(tmp_path, ["c1,2026-01-03,3,EUR", "c1,2026-01-01,1,EUR", "c2,2026-01-02,2,EUR",
                              "c3,2026-01-01,4,EUR"])
    clicks = write(tmp_path, "c.jsonl", "".join(orjson.dumps(
        {"event_id": f"k{i}", "customer_id": "c1", "ts": ts, "type": "login", "session_id": "s"}
    ).decode() + "\n" for i, ts in enumerate(["2026-01-02", "2026-01-01"])))
    events = sent(load([txns, clicks], mapping=Mapping.parse(TXN_MAP)))
    assert [(e["ts"], e.get("amount") or e["event_id"]) for e in events] == [
        (T0, 1.0), (T0, 4.0), (T0, "k1"), (T0 + DAY, 2.0), (T0 + DAY, "k0"), (T0 + 2 * DAY, 3.0)]


def test_sent_records__are_the_canonical_contract_with_epoch_ms_time(tmp_path: Path) -> None:
    path = txn_csv(tmp_path, ["c1,2026-01-02T00:00:00+00:00,5,EUR"])
    (event,) = sent(load([path], mapping=Mapping.parse(TXN_MAP)))
    assert event == {"event_id": event["event_id"], "customer_id": "c1", "ts": T0 + DAY, "amount": 5.0,
                     "currency": "EUR", "items": 1, "categories": [], "discount_amount": 0.0,
                     "refund": False}


def test_bad_rows__become_dead_letters_with_file_row_reason_and_original(tmp_path: Path) -> None:
    tomorrow = (datetime.now(tz=UTC) + timedelta(days=2)).date().isoformat()
    path = txn_csv(tmp_path, ["c1,2026-01-02,5,EUR", "c2,yesterday,5,EUR", "c3,2026-01-02,lots,EUR",
                              ",2026-01-02,5,EUR", "c5,2026-01-02,5,EUR,extra", "c6,1999-12-31,5,EUR",
                              f"c7,{tomorrow},5,EUR", "c8,2026-01-02,-5,EUR"])
    loader = load([path], mapping=Mapping.parse(TXN_MAP))
    letters = dead(loader)
    assert [(d.source_offset, d.reason) for d in letters] == [
        (2, "invalid_field"), (3, "invalid_field"), (4, "missing_field"), (5, "malformed_row"),
        (6, "too_old"), (7, "future_event"), (8, "invalid_field")]
    assert all(d.source_topic == f"replay:{path}" and d.source_partition == -1 for d in letters)
    assert orjson.loads(letters[1].original) == {"cust": "c3", "date": "2026-01-02", "dollars": "lots",
                                                 "currency": "EUR"}
    assert letters[0].customer_id == "c2" and "yesterday" in letters[0].detail
    assert loader.summary.rejected == {"invalid_field": 3, "missing_field": 1, "malformed_row": 1,
                                       "too_old": 1, "future_event": 1}
    assert len(loader.events) == 1


def test_summary__counts_rows_and_event_time_range_and_prints_reasons(tmp_path: Path) -> None:
    path = txn_csv(tmp_path, ["c1,2026-01-03,5,EUR", "c2,2026-01-01,5,EUR", "c3,nope,5,EUR"])
    s = dry([path], mapping=Mapping.parse(TXN_MAP))
    assert (s.rows_read, s.valid, s.produced, s.dead_lettered) == (3, 2, 0, 0)  # a dry run sends nothing
    assert (s.first_event_ts, s.last_event_ts) == ("2026-01-01T00:00:00.000Z", "2026-01-03T00:00:00.000Z")
    assert s.files[0].derived_ids == 2 and s.files[0].rejected == 1
    text = format_summary(s)
    assert "rows read     3" in text and "invalid_field" in text and "row 3" in text


def test_many_rows__come_out_of_the_spool_sorted(tmp_path: Path) -> None:
    n = 20_000
    body = "".join(f"c{i % 997},{1767225600 + (n - i) * 7},{i % 50}.5,EUR\n" for i in range(n))
    path = write(tmp_path, "big.csv", "cust,date,dollars,currency\n" + body)
    loader = load([path], mapping=Mapping.parse(TXN_MAP))
    assert len(loader.events) == n and not loader.dead
    times = [ts for ts, _, _, _ in loader.events.in_time_order()]
    assert times == sorted(times) and times[0] == T0 + 7_000


# --------------------------------------------------------------------------- CLI and progress


def test_cli_dry_run__prints_the_summary_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = txn_csv(tmp_path, ["c1,2026-01-02,5,EUR", "c2,bad,5,EUR"])
    code = main(["replay", str(path), "--map", TXN_MAP, "--dry-run", "--json", "--no-progress"])
    out = orjson.loads(capsys.readouterr().out)
    assert code == 0
    assert (out["rows_read"], out["valid"], out["rejected"]) == (2, 1, {"invalid_field": 1})


def test_cli__exits_1_when_every_row_is_rejected_and_2_on_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = txn_csv(tmp_path, ["c1,never,5,EUR"])
    assert main(["replay", str(path), "--map", TXN_MAP, "--dry-run", "--no-progress"]) == 1
    assert main(["replay", str(tmp_path / "missing.csv"), "--dry-run"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_progress_without_a_terminal__prints_plain_lines_with_rate_and_eta() -> None:
    out = io.StringIO()
    bar = Progress("producing", 1000, out=out, tty=False, every_s=0.0)
    bar.update(250)
    bar.update(1000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert "250/1,000 rows" in lines[0] and "25%" in lines[0] and "rows/s" in lines[0] and "ETA" in lines[0]
    assert "100%" in lines[2] and "ETA 0s" in lines[2]


def test_progress_on_a_terminal__redraws_one_line() -> None:
    out = io.StringIO()
    bar = Progress("reading", 2_000_000, unit="bytes", out=out, tty=True, every_s=0.0)
    bar.update(1_000_000)
    bar.close()
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith("\n")
    assert "1.0/2.0 MB" in out.getvalue() and "[############" in out.getvalue()


def test_dead_letter_original__round_trips_through_base64(tmp_path: Path) -> None:
    path = write(tmp_path, "e.jsonl", '{"customer_id": "c1", "ts": "soon", "type": "login"}\n')
    (letter,) = dead(load([path], kind="click"))
    assert base64.b64decode(letter.original_b64) == path.read_bytes().rstrip(b"\n")
    assert letter.reason == "invalid_field"  # the first error in field order: ts
    assert "ts:" in letter.detail and "session_id: Field required" in letter.detail


def test_pacer__sends_each_event_at_start_plus_its_event_time_over_speed() -> None:
    clock = [50.0]
    pacer = Pacer(60.0, now=lambda: clock[0])  # one minute of history per second
    assert pacer.delay(T0) == 0.0  # the first event sets t0 and the start
    assert pacer.delay(T0 + 120_000) == pytest.approx(2.0)
    clock[0] = 51.5
    assert pacer.delay(T0 + 120_000) == pytest.approx(0.5)
    assert pacer.delay(T0 + 30_000) == 0.0  # overdue: send at once
    assert Pacer(None).delay(T0 + 10**9) == 0.0  # unpaced


@pytest.mark.parametrize(("kw", "error"), [({"speed": 0.0}, "--speed"), ({"max_lag": 0}, "--max-lag"),
                                           ({"paths": ()}, "at least one file")])
def test_replay_options__refuse_nonsense(kw: dict, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        ReplayOptions(**{"paths": (Path("x.csv"),), **kw})


# --------------------------------------------------------------------------- old history, currencies


def test_compact_dates__are_dates_not_epochs_and_keep_the_file_currency(tmp_path: Path) -> None:
    path = txn_csv(tmp_path, ["c1,19970101,5,EUR", "c2,19980601,5,usd"])
    opts = ReplayOptions(paths=(path,), mapping=Mapping.parse(TXN_MAP), dry_run=True, progress=False)
    loader = Loader(Settings(earliest_event_time="1990-01-01", currency_rates="USD:0.9"), opts,
                    ReplaySummary())
    loader.load()
    assert [(e["ts"], e["amount"], e["currency"]) for e in sent(loader)] == [
        (852_076_800_000, 5.0, "EUR"), (896_659_200_000, 5.0, "usd")]  # the worker converts


def test_ts_format__reads_the_ts_column_and_refuses_rows_that_do_not_match(tmp_path: Path) -> None:
    path = txn_csv(tmp_path, ["c1,31/12/1999,5,EUR", "c2,1999-12-31,5,EUR", "c3,01/02/2026,5,EUR"])
    loader = load([path], mapping=Mapping.parse(TXN_MAP, ts_format="%d/%m/%Y"))
    assert [e["ts"] for e in sent(loader)] == [1_769_904_000_000]  # 1 February 2026
    assert [(d.source_offset, d.reason) for d in dead(loader)] == [(1, "too_old"), (2, "invalid_field")]
    assert "does not match --ts-format '%d/%m/%Y'" in dead(loader)[1].detail
    with pytest.raises(ConfigError, match="strptime"):
        Mapping.parse(TXN_MAP, ts_format="dd/mm/yyyy")


def test_row_in_a_currency_without_a_rate__is_refused_as_the_worker_would(tmp_path: Path) -> None:
    loader = load([txn_csv(tmp_path, ["c1,2026-01-02,5,EUR", "c2,2026-01-02,5,JPY"])],
                  mapping=Mapping.parse(TXN_MAP))
    assert [e["customer_id"] for e in sent(loader)] == ["c1"]
    assert [(d.source_offset, d.reason) for d in dead(loader)] == [(2, "unknown_currency")]
