"""Old history and money in several currencies, through a real broker, worker and Valkey.

A 1990s purchase history (compact ``19970101`` dates, ISO dates, a day-first
format read with ``--ts-format``) replays once the earliest accepted event time
is lowered; an event before it is refused naming the setting. Transactions in
other currencies are converted to the reporting currency by the rate table
before they are summed; one in a currency the table lacks is dead-lettered.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from streamseg.features.keys import Keys
from streamseg.features.registry import derive
from streamseg.features.store import parse_state
from streamseg.publish.records import DeadLetter
from streamseg.settings import Settings

from .conftest import WorkerProcess, consume, produce
from .test_replay import events_total, run_replay, wait_for

pytestmark = pytest.mark.integration

MAP = "customer_id=cust,ts=when,amount=dollar_value,currency=cur"
# 1997-01-01, 1997-03-15 and 1998-06-01 (UTC midnight), in epoch ms
JAN_97, MAR_97, JUN_98 = 852_076_800_000, 858_384_000_000, 896_659_200_000


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The conftest settings, with overrides from ``parametrize(..., indirect=True)``."""
    return settings.replace(**getattr(request, "param", {}))


async def state(client: aioredis.Redis, settings: Settings, customer_id: str) -> dict[str, float | str]:
    raw = await client.hgetall(Keys(settings.key_prefix).state(customer_id))
    return parse_state([x for kv in raw.items() for x in kv])


@pytest.mark.parametrize("settings", [{"earliest_event_time": "1990-01-01",
                                       "dedup_horizon_days": 20_000.0}], indirect=True)
async def test_1990s_history_with_compact_and_explicit_dates__replays_and_older_rows_name_the_setting(
    settings: Settings, worker: WorkerProcess, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    compact = tmp_path / "orders.csv"
    compact.write_text("cust,when,dollar_value,cur\n"
                       "c1,19970101,10,EUR\n"
                       "c1,19970315,20,EUR\n"
                       "c2,1998-06-01,5,EUR\n"
                       "c3,19891231,7,EUR\n")  # before STREAMSEG_EARLIEST_EVENT_TIME
    summary = run_replay(settings, compact, "--map", MAP)
    assert (summary["produced"], summary["rejected"]) == (3, {"too_old": 1})
    assert (summary["first_event_ts"], summary["last_event_ts"]) == (
        "1997-01-01T00:00:00.000Z", "1998-06-01T00:00:00.000Z")

    day_first = tmp_path / "legacy.csv"
    day_first.write_text("cust,when,dollar_value,cur\nc2,31/12/1996 18:30,4,EUR\nc2,1997-01-02,4,EUR\n")
    explicit = run_replay(settings, day_first, "--map", MAP, "--ts-format", "%d/%m/%Y %H:%M")
    assert (explicit["produced"], explicit["first_event_ts"]) == (1, "1996-12-31T18:30:00.000Z")
    assert list(explicit["rejected"]) == ["invalid_field"]  # the ISO row does not match the format

    await wait_for(settings, "processed", 4, worker)
    c1, c2 = await state(redis_client, settings, "c1"), await state(redis_client, settings, "c2")
    assert (c1["first_ts"], c1["last_ts"], c2["first_ts"], c2["last_ts"]) == (
        JAN_97, MAR_97, JAN_97 - 5 * 3_600_000 - 30 * 60_000, JUN_98)
    assert derive(c1, MAR_97)["monetary_total"] == 30.0
    assert not await redis_client.exists(Keys(settings.key_prefix).state("c3"))

    dead = await consume(settings, settings.topic_dlq, until=2, timeout=30, settle=1.0)
    by_reason = {d["value"]["reason"]: DeadLetter.model_validate(d["value"]) for d in dead}
    assert set(by_reason) == {"too_old", "invalid_field"}
    too_old = by_reason["too_old"]
    assert "1989-12-31" in too_old.detail and "1990-01-01" in too_old.detail
    assert "STREAMSEG_EARLIEST_EVENT_TIME" in too_old.detail
    assert "does not match --ts-format" in by_reason["invalid_field"].detail


@pytest.mark.parametrize("settings", [{"reporting_currency": "EUR",
                                       "currency_rates": "USD:0.5,gbp:2"}], indirect=True)
async def test_mixed_currencies__are_converted_before_summing_and_an_unknown_one_is_dead_lettered(
    settings: Settings, worker: WorkerProcess, redis_client: aioredis.Redis
) -> None:
    ts = 1_767_225_600_000  # 2026-01-01
    orders = [("o1", "c1", 10.0, "EUR", 0.0), ("o2", "c1", 10.0, "USD", 2.0),
              ("o3", "c1", 10.0, "GBP", 0.0), ("o4", "c2", 10.0, "JPY", 0.0),
              ("o5", "c2", 3.0, "eur", 0.0)]
    await produce(settings, [
        (settings.topic_transactions, cid.encode(), orjson.dumps(
            {"event_id": eid, "customer_id": cid, "ts": ts + i, "amount": amount, "currency": cur,
             "discount_amount": discount}))
        for i, (eid, cid, amount, cur, discount) in enumerate(orders)])
    await wait_for(settings, None, len(orders), worker)
    assert events_total(settings, "processed") == 4

    c1, c2 = await state(redis_client, settings, "c1"), await state(redis_client, settings, "c2")
    # 10 EUR + 10 USD at 0.5 + 10 GBP at 2, never 30 of mixed units
    assert derive(c1, ts)["monetary_total"] == 35.0
    assert derive(c1, ts)["avg_order_value"] == pytest.approx(35.0 / 3)
    assert derive(c1, ts)["discount_share"] == pytest.approx(1.0 / 36.0)  # the USD discount, converted
    assert derive(c2, ts)["monetary_total"] == 3.0  # the JPY order is not in it

    dead = await consume(settings, settings.topic_dlq, until=1, timeout=30, settle=1.0)
    assert len(dead) == 1
    letter = DeadLetter.model_validate(dead[0]["value"])
    assert (letter.reason, dead[0]["key"]) == ("unknown_currency", b"c2")
    assert "'JPY'" in letter.detail and "STREAMSEG_CURRENCY_RATES" in letter.detail
    assert "EUR (and GBP, USD by the rate table)" in letter.detail
    assert orjson.loads(letter.original)["currency"] == "JPY"
