"""``streamseg replay`` -> real broker -> real ``streamseg worker`` -> real Valkey.

Every feature of every customer is compared with the from-scratch reference
(:func:`streamseg.features.reference.features`) at the same "now": the worker
runs with ``clock=event``, so its "now" is the newest event time it applied,
which after a full replay is the newest event time in the files.

The worker reads the two input topics at its own pace: draining a backlog, it
may apply a customer's transactions weeks of event time ahead of older
clicks, which are then (rightly) refused as late. The reference test replays
with ``--max-lag`` under the default 30-day horizon and a longer history, so
it also proves the lag gate keeps every event in time; the idempotency test
replays unthrottled and so lifts the horizon above the history's span.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from streamseg.events.models import ClickEvent, Event, TransactionEvent, iso
from streamseg.features import reference
from streamseg.features.keys import Keys
from streamseg.features.registry import DAY_MS, FEATURES, HALFLIFE_DAYS, derive
from streamseg.features.store import parse_state
from streamseg.generate import assign_personas, simulate
from streamseg.publish.records import DeadLetter
from streamseg.replay.runner import derived_event_id, file_digest
from streamseg.settings import Settings
from tests.support import wait_until

from .conftest import WorkerProcess, consume, settings_env

pytestmark = pytest.mark.integration

HISTORY_DAYS = 60
END_MS = int(time.time() * 1000) - int(DAY_MS)
COUNT_FEATURES = {"orders_total", "sessions_total", "events_total"}
TXN_COLUMNS = ["cust", "when", "dollar_value", "cur", "n_items", "cats", "disc", "is_refund"]
TXN_MAP = ("customer_id=cust,ts=when,amount=dollar_value,currency=cur,items=n_items,categories=cats,"
           "discount_amount=disc,refund=is_refund")


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The conftest settings, with overrides from ``parametrize(..., indirect=True)``
    (``cluster``: on the shared Valkey cluster, waiting for a replica)."""
    update = dict(getattr(request, "param", {}))
    if update.pop("cluster", False):
        update.update(redis_url=request.getfixturevalue("valkey_cluster").url, redis_wait_replicas=1)
    return settings.model_copy(update=update)


# --- files ---------------------------------------------------------------------------------


def history(customers: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Generated clicks and transactions (payload dicts), in event-time order."""
    truth = assign_personas(customers, seed=seed)
    clicks, txns = [], []
    for ev in simulate(truth, days=HISTORY_DAYS, end_ms=END_MS, seed=seed):
        (clicks if ev.topic_role == "clickstream" else txns).append(ev.payload)
    return clicks, txns


def write_txn_csv(path: Path, txns: list[dict]) -> list[Event]:
    """Transactions as a ';' CSV with its own column names and no event id; returns the events
    the worker must see (ids derived from the file's digest and each row's number)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(TXN_COLUMNS)
        for t in txns:
            w.writerow([t["customer_id"], t["ts"], repr(t["amount"]), t["currency"], t["items"],
                        "|".join(t["categories"]), repr(t["discount_amount"]), str(t["refund"]).lower()])
    digest = file_digest(path)
    return [TransactionEvent.model_validate({**t, "event_id": derived_event_id(digest, row)})
            for row, t in enumerate(txns, start=1)]


def write_click_jsonl(path: Path, clicks: list[dict]) -> list[Event]:
    """Clicks as JSON Lines with ISO-8601 times and their own event ids."""
    with path.open("wb") as fh:
        for c in clicks:
            fh.write(orjson.dumps({**c, "ts": iso(c["ts"])}) + b"\n")
    return [ClickEvent.model_validate(c) for c in clicks]


def write_click_parquet(path: Path, clicks: list[dict]) -> list[Event]:
    """Clicks as Parquet with a zoned timestamp column."""
    cols = ["event_id", "customer_id", "type", "session_id", "category"]
    table = pa.table({**{c: [x.get(c) for x in clicks] for c in cols},
                      "ts": pa.array([x["ts"] for x in clicks], type=pa.timestamp("ms", tz="UTC"))})
    pq.write_table(table, path)
    return [ClickEvent.model_validate(c) for c in clicks]


# --- running -------------------------------------------------------------------------------


def run_replay(settings: Settings, *args: object) -> dict:
    proc = subprocess.run([sys.executable, "-m", "streamseg", "replay", *map(str, args), "--json",
                           "--no-progress"], env=settings_env(settings), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return orjson.loads(proc.stdout)


def events_total(settings: Settings, outcome: str | None = None) -> float:
    """The worker's streamseg_events_total for one outcome (None: every outcome)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "streamseg_events_total" and outcome in (None, s.labels["outcome"]))


async def wait_for(settings: Settings, outcome: str | None, n: int, worker: WorkerProcess,
                   timeout: float = 60.0) -> None:
    """Until the worker reports ``n`` events with ``outcome`` (None: any outcome)."""
    await wait_until(lambda: events_total(settings, outcome) >= n, timeout,
                     lambda: f"{n} {outcome} events; the worker reports "
                             f"{events_total(settings, outcome)}\n{worker.log()[-3000:]}")


async def states(client: aioredis.Redis, settings: Settings) -> dict[str, dict[str, float | str]]:
    """Every customer's Redis hash, without the membership fields the segmenter writes."""
    keys = Keys(settings.key_prefix)
    out = {}
    async for key in client.scan_iter(match=keys.customer_pattern(), count=1000):
        raw = await client.hgetall(key)
        state = parse_state([x for kv in raw.items() for x in kv])
        out[keys.customer_of(key.decode())] = {k: v for k, v in state.items() if not k.startswith("seg")}
    return out


def by_customer(events: list[Event]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        groups[e.customer_id].append(e)
    return groups


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{}, {"cluster": True}], indirect=True, ids=["node", "cluster"])
async def test_replayed_history__matches_the_reference_for_every_feature_of_every_customer(
    settings: Settings, worker: WorkerProcess, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    clicks, txns = history(customers=30, seed=11)
    events = write_txn_csv(tmp_path / "orders.csv", txns) + \
        write_click_jsonl(tmp_path / "clicks.jsonl", clicks)
    assert settings.dedup_horizon_days < HISTORY_DAYS  # lateness is possible: the gate must prevent it
    summary = run_replay(settings, tmp_path / "orders.csv", tmp_path / "clicks.jsonl", "--map", TXN_MAP,
                         "--max-lag", 600)
    assert (summary["rows_read"], summary["produced"], summary["rejected"]) == (len(events), len(events), {})
    assert [f["derived_ids"] for f in summary["files"]] == [len(txns), 0]
    await wait_for(settings, None, len(events), worker)  # every event has an outcome
    assert events_total(settings, "late") == 0 and events_total(settings, "dead_letter") == 0
    assert events_total(settings, "processed") == len(events)

    got = await states(redis_client, settings)
    # nothing was late, so arrival order does not matter: the reference takes event-time order
    want = by_customer(sorted(events, key=lambda e: e.ts_ms))
    assert set(got) == set(want)
    now = max(e.ts_ms for e in events)  # the worker's event-time clock after the replay
    assert summary["last_event_ts"] == iso(now)
    checked, wrong = 0, []
    for cid, evs in want.items():
        ours = derive(got[cid], now)
        ref = reference.features(evs, now, horizon_ms=settings.dedup_horizon_days * DAY_MS,
                                 halflife_ms=HALFLIFE_DAYS * DAY_MS)
        assert set(ours) == set(ref) == {f.name for f in FEATURES}
        for name, value in ref.items():
            same = ours[name] == value if name in COUNT_FEATURES else \
                math.isclose(ours[name], value, rel_tol=1e-9, abs_tol=1e-9)
            if not same:
                wrong.append((cid, name, ours[name], value))
            checked += 1
    assert not wrong, f"{len(wrong)} features differ (customer, feature, worker, reference): {wrong[:20]}"
    # the comparison covered customers who bought, refunded, browsed and opened e-mails
    assert checked == len(want) * len(FEATURES)
    for name in ("orders_total", "refund_rate", "sessions_total", "email_opens_30d", "discount_share"):
        assert any(derive(s, now)[name] > 0 for s in got.values()), name


@pytest.mark.parametrize("settings", [{"dedup_horizon_days": HISTORY_DAYS + 30.0}], indirect=True)
async def test_replaying_the_same_files_twice__changes_no_feature(
    settings: Settings, worker: WorkerProcess, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    clicks, txns = history(customers=12, seed=5)
    txns.insert(3, txns[3])  # the same row twice: two real orders, not a redelivery
    files = [tmp_path / "orders.csv", tmp_path / "clicks.parquet"]
    events = write_txn_csv(files[0], txns) + write_click_parquet(files[1], clicks)
    first = run_replay(settings, *files, "--map", TXN_MAP)
    assert first["produced"] == len(events)
    await wait_for(settings, "processed", len(events), worker)
    once = await states(redis_client, settings)

    second = run_replay(settings, *files, "--map", TXN_MAP)
    assert second["produced"] == len(events)
    await wait_for(settings, "duplicate", len(events), worker)
    twice = await states(redis_client, settings)

    assert twice == once
    assert events_total(settings, "processed") == len(events)
    doubled = txns[3]["customer_id"]
    orders = sum(1 for t in txns if t["customer_id"] == doubled and not t["refund"])
    assert derive(once[doubled], 0.0)["orders_total"] == orders


async def test_bad_rows__are_dead_lettered_with_file_and_row_and_good_rows_go_on(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("cust,when,dollar_value,cur\n"
                    "c1,2026-01-02,5,EUR\n"
                    "c2,not a time,5,EUR\n"
                    "c3,2026-01-02,-1,EUR\n"
                    "c4,2026-01-03,7.5,EUR\n"
                    "c5,2026-01-02,5,EUR,surplus\n")
    summary = run_replay(settings, path, "--map", "customer_id=cust,ts=when,amount=dollar_value,currency=cur")
    assert summary["produced"] == 2 and summary["dead_lettered"] == 3
    assert summary["rejected"] == {"invalid_field": 2, "malformed_row": 1}

    dead = await consume(settings, settings.topic_dlq, until=3, timeout=30, settle=1.0)
    letters = sorted((DeadLetter.model_validate(d["value"]) for d in dead), key=lambda d: d.source_offset)
    assert [(d.source_offset, d.reason) for d in letters] == [
        (2, "invalid_field"), (3, "invalid_field"), (5, "malformed_row")]
    assert {d.source_topic for d in letters} == {f"replay:{path}"}
    assert orjson.loads(letters[0].original) == {"cust": "c2", "when": "not a time",
                                                 "dollar_value": "5", "cur": "EUR"}
    assert [d["key"] for d in dead if d["value"]["source_offset"] == 2] == [b"c2"]
    good = await consume(settings, settings.topic_transactions, until=2, timeout=30, settle=1.0)
    assert sorted((g["key"], g["value"]["amount"]) for g in good) == [(b"c1", 5.0), (b"c4", 7.5)]
