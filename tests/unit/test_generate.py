"""The synthetic generator: contract-valid, ordered, deterministic, and personas that differ."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamseg.events.models import ClickEvent, TransactionEvent
from streamseg.generate import (
    PERSONAS,
    GeneratedEvent,
    assign_personas,
    produce,
    read_truth,
    simulate,
    write_truth,
)
from streamseg.generate import producer as producer_mod
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS

END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAYS = 60
START_MS = END_MS - DAYS * DAY_MS
ALL_PERSONAS = {name: 1.0 for name in PERSONAS}


@pytest.fixture(scope="module")
def truth() -> dict[str, str]:
    return assign_personas(210, seed=11, weights=ALL_PERSONAS)


@pytest.fixture(scope="module")
def events(truth: dict[str, str]) -> list[GeneratedEvent]:
    return list(simulate(truth, days=DAYS, end_ms=END_MS, seed=11))


@dataclass
class Seen:
    """Per-customer tallies computed from generated events only."""

    n: Counter[str] = field(default_factory=Counter)
    amount: float = 0.0
    discount: float = 0.0
    first_ms: int = 0
    last_ms: int = 0


def tally(events: Iterable[GeneratedEvent]) -> dict[str, Seen]:
    out: dict[str, Seen] = defaultdict(Seen)
    for ev in events:
        s, p = out[ev.customer_id], ev.payload
        if not s.first_ms:
            s.first_ms = ev.ts_ms
        s.last_ms = ev.ts_ms
        if ev.topic_role == "clickstream":
            s.n[p["type"]] += 1
        elif p["refund"]:
            s.n["refund"] += 1
        else:
            s.n["order"] += 1
            s.amount += p["amount"]
            s.discount += p["discount_amount"]
    return out


def mean_by_persona(
    truth: Mapping[str, str], seen: Mapping[str, Seen], metric: Any
) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for cid, persona in truth.items():
        groups[persona].append(metric(seen[cid]))
    return {persona: statistics.fmean(vals) for persona, vals in groups.items()}


def discount_share(s: Seen) -> float:
    gross = s.amount + s.discount
    return s.discount / gross if gross else 0.0


def period_fraction(ts_ms: int) -> float:
    return (ts_ms - START_MS) / (END_MS - START_MS)


# --- the contract ------------------------------------------------------------------


def test_every_generated_event__validates_against_the_contract(
    events: list[GeneratedEvent],
) -> None:
    for ev in events:
        model = ClickEvent if ev.topic_role == "clickstream" else TransactionEvent
        parsed = model.model_validate(ev.payload)
        assert parsed.customer_id == ev.customer_id
        assert parsed.ts_ms == ev.ts_ms == ev.payload["ts"]
        orjson.dumps(ev.payload)  # JSON-able


def test_every_customer__has_events_within_the_simulated_period(
    truth: dict[str, str], events: list[GeneratedEvent]
) -> None:
    assert {ev.customer_id for ev in events} == set(truth)
    assert all(START_MS <= ev.ts_ms <= END_MS for ev in events)


def test_events__come_in_event_time_order(events: list[GeneratedEvent]) -> None:
    assert all(a.ts_ms <= b.ts_ms for a, b in pairwise(events))


def test_event_ids__are_unique_and_named_after_the_customer(events: list[GeneratedEvent]) -> None:
    ids = [ev.payload["event_id"] for ev in events]
    assert len(ids) == len(set(ids))
    assert all(ev.payload["event_id"].startswith(f"{ev.customer_id}-") for ev in events)


def test_customer_ids__look_like_c_and_six_digits(truth: dict[str, str]) -> None:
    assert sorted(truth)[:2] == ["c000000", "c000001"]


def test_same_seed__gives_same_events(truth: dict[str, str], events: list[GeneratedEvent]) -> None:
    again = list(simulate(truth, days=DAYS, end_ms=END_MS, seed=11))
    assert again == events


def test_another_seed__gives_other_events(truth: dict[str, str]) -> None:
    a = [ev.payload for ev in simulate(truth, days=10, end_ms=END_MS, seed=1)]
    b = [ev.payload for ev in simulate(truth, days=10, end_ms=END_MS, seed=2)]
    assert a != b


# --- sequences ---------------------------------------------------------------------


def test_a_session__belongs_to_one_customer_and_lasts_minutes_not_days(
    events: list[GeneratedEvent],
) -> None:
    spans: dict[str, tuple[str, int, int]] = {}
    for ev in events:
        if ev.topic_role != "clickstream":
            continue
        sid = ev.payload["session_id"]
        cid, lo, _ = spans.get(sid, (ev.customer_id, ev.ts_ms, ev.ts_ms))
        assert cid == ev.customer_id
        spans[sid] = (cid, lo, ev.ts_ms)
    assert max(hi - lo for _, lo, hi in spans.values()) < DAY_MS / 4
    sessions_per_customer = Counter(cid for cid, _, _ in spans.values())
    assert statistics.fmean(sessions_per_customer.values()) > 5


def test_every_order__follows_a_checkout_start_of_the_same_customer(
    events: list[GeneratedEvent],
) -> None:
    last_checkout: dict[str, int] = {}
    orders = 0
    for ev in events:
        if ev.topic_role == "clickstream" and ev.payload["type"] == "checkout_start":
            last_checkout[ev.customer_id] = ev.ts_ms
        elif ev.topic_role == "transactions" and not ev.payload["refund"]:
            orders += 1
            assert 0 <= ev.ts_ms - last_checkout[ev.customer_id] < 15 * 60_000
    assert orders > 100


def test_every_refund__follows_an_order_of_the_same_customer(
    events: list[GeneratedEvent],
) -> None:
    first_order: dict[str, int] = {}
    refunds = 0
    for ev in events:
        if ev.topic_role != "transactions":
            continue
        if ev.payload["refund"]:
            refunds += 1
            assert first_order[ev.customer_id] < ev.ts_ms
        else:
            first_order.setdefault(ev.customer_id, ev.ts_ms)
    assert refunds > 10


def test_customers__prefer_one_device_and_one_category(events: list[GeneratedEvent]) -> None:
    devices: dict[str, Counter[str]] = defaultdict(Counter)
    for ev in events:
        if ev.topic_role == "clickstream":
            devices[ev.customer_id][ev.payload["device"]] += 1
    top_share = [c.most_common(1)[0][1] / c.total() for c in devices.values()]
    assert statistics.fmean(top_share) > 0.7


# --- personas ----------------------------------------------------------------------


def test_assign_personas__follows_the_weights_and_the_seed() -> None:
    truth = assign_personas(1000, seed=5, weights={"lapsing": 3, "window_shopper": 1})
    assert Counter(truth.values()) == {"lapsing": 750, "window_shopper": 250}
    assert truth == assign_personas(1000, seed=5, weights={"lapsing": 3, "window_shopper": 1})
    assert truth != assign_personas(1000, seed=6, weights={"lapsing": 3, "window_shopper": 1})


def test_assign_personas__by_default_mixes_six_personas() -> None:
    assert len(set(assign_personas(100, seed=0).values())) >= 6


@pytest.mark.parametrize("weights", [{"nobody": 1.0}, {"lapsing": -1.0}, {"lapsing": 0.0}])
def test_assign_personas__refuses_bad_weights(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        assign_personas(10, seed=0, weights=weights)


def test_personas__are_documented_frozen_dataclasses() -> None:
    assert len(PERSONAS) >= 6
    for name, persona in PERSONAS.items():
        assert persona.name == name and persona.description
        with pytest.raises(AttributeError):
            persona.buy_prob = 1.0  # type: ignore[misc]


def test_personas__differ_in_their_defining_behaviour(
    truth: dict[str, str], events: list[GeneratedEvent]
) -> None:
    seen = tally(events)

    def by(metric: Any) -> dict[str, float]:
        return mean_by_persona(truth, seen, metric)

    def others(values: dict[str, float], persona: str) -> list[float]:
        return [v for k, v in values.items() if k != persona]

    discount = by(discount_share)
    assert discount["bargain_hunter"] > 0.2
    assert discount["bargain_hunter"] > 2 * max(others(discount, "bargain_hunter"))

    orders = by(lambda s: s.n["order"])
    views = by(lambda s: s.n["product_view"])
    assert orders["window_shopper"] < 0.5
    assert views["window_shopper"] > statistics.median(views.values())
    conversion = by(lambda s: s.n["order"] / max(1, s.n["add_to_cart"]))
    assert conversion["window_shopper"] < 0.05 < 0.3 < conversion["loyal_high_spender"]

    assert orders["loyal_high_spender"] == max(orders.values())
    aov = by(lambda s: s.amount / s.n["order"] if s.n["order"] else 0.0)
    assert aov["loyal_high_spender"] > 2 * aov["bargain_hunter"]

    refund_rate = by(lambda s: s.n["refund"] / max(1, s.n["order"]))
    assert refund_rate["serial_returner"] > 0.3 > 0.1 > max(others(refund_rate, "serial_returner"))

    click_rate = by(lambda s: s.n["email_click"] / max(1, s.n["email_open"]))
    opens = by(lambda s: s.n["email_open"])
    assert click_rate["email_responder"] == max(click_rate.values()) > 0.45
    assert opens["email_responder"] == max(opens.values())

    for cid, persona in truth.items():
        if persona == "lapsing":
            assert period_fraction(seen[cid].last_ms) < 0.5
        elif persona == "new_explorer":
            assert period_fraction(seen[cid].first_ms) > 0.85
        else:
            assert period_fraction(seen[cid].last_ms) > 0.5


def test_customers_of_one_persona__still_vary(
    truth: dict[str, str], events: list[GeneratedEvent]
) -> None:
    seen = tally(events)
    loyal = [seen[c].n.total() for c, p in truth.items() if p == "loyal_high_spender"]
    assert statistics.pstdev(loyal) > 0.15 * statistics.fmean(loyal)


# --- the truth file ------------------------------------------------------------------


def test_truth_file__round_trips(tmp_path: Path) -> None:
    truth = assign_personas(50, seed=3)
    path = tmp_path / "sub" / "truth.csv"
    write_truth(truth, path)
    assert path.read_text().splitlines()[0] == "customer_id,persona"
    assert read_truth(path) == truth


def test_truth_file__with_another_header__is_refused(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    path.write_text("id,segment\nc1,lapsing\n")
    with pytest.raises(ValueError, match="header"):
        read_truth(path)


# --- the producer (a fake AIOKafkaProducer, no network) ----------------------------------


class FakeProducer:
    """Records what would be sent; delivery futures resolve at once."""

    instances: list[FakeProducer] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.started = self.stopped = False
        self.flushes = 0
        FakeProducer.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def flush(self) -> None:
        self.flushes += 1

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.instances = []
    monkeypatch.setattr(producer_mod, "AIOKafkaProducer", FakeProducer)
    return FakeProducer


async def test_produce__sends_each_event_to_its_topic_keyed_by_customer(
    fake_kafka: type[FakeProducer], tmp_path: Path
) -> None:
    settings = Settings(kafka_bootstrap="k1:9092,k2:9092")
    truth = assign_personas(20, seed=4)
    counts: list[int] = []
    stats = await produce(settings, truth, days=20, seed=4, rate=None, duration=None,
                          end_ms=END_MS, truth_path=tmp_path / "t.csv", progress=counts.append)
    (fake,) = fake_kafka.instances
    assert fake.config["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert fake.started and fake.stopped and fake.flushes >= 1
    expected = list(simulate(truth, days=20, end_ms=END_MS, seed=4))
    assert [(t, k, orjson.loads(v)) for t, k, v in fake.sent] == [
        (settings.topic(ev.topic_role), ev.customer_id.encode(), ev.payload) for ev in expected
    ]
    assert stats.events_produced == len(expected) == stats.clicks + stats.transactions
    assert stats.transactions == sum(ev.topic_role == "transactions" for ev in expected)
    assert stats.customers == len(truth)
    assert counts[-1] == len(expected)
    assert read_truth(tmp_path / "t.csv") == truth


async def test_produce__at_a_rate_for_a_duration__sends_about_rate_times_duration(
    fake_kafka: type[FakeProducer],
) -> None:
    truth = assign_personas(50, seed=4)
    stats = await produce(Settings(), truth, days=30, seed=4, rate=400.0, duration=0.5,
                          end_ms=END_MS)
    assert 150 <= stats.events_produced <= 260
    assert 0.45 <= stats.seconds < 1.0
    assert fake_kafka.instances[0].stopped


async def test_produce__when_cancelled__flushes_and_stops_the_producer(
    fake_kafka: type[FakeProducer],
) -> None:
    truth = assign_personas(50, seed=4)
    task = asyncio.create_task(
        produce(Settings(), truth, days=30, seed=4, rate=200.0, duration=None, end_ms=END_MS)
    )
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (fake,) = fake_kafka.instances
    assert 0 < len(fake.sent) < 100
    assert fake.flushes >= 1 and fake.stopped
