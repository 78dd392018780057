"""Customer value in the hot path and the re-scoring sweep (real Valkey, in-process engine):
a customer's risk band is published with its updates and stored; silence raises the risk,
and the sweep publishes the band change once (debounced), not at every sweep; the drift
report counts those moves into the high-risk band per segment and alerts on the rise."""

from __future__ import annotations

import dataclasses
from collections import Counter

import orjson
import pytest

from streamseg.engine import InMessage
from streamseg.events.models import ClickEvent, TransactionEvent
from streamseg.features.registry import DAY_MS
from streamseg.features.store import RedisFeatureStore
from streamseg.rescore import sweep
from streamseg.settings import Settings
from streamseg.value.params import ValueParams
from tests.support import Recorder

from .test_sample_process import T0, seeded_engine

pytestmark = pytest.mark.integration

VALUE_ALERTS = {"high_risk_share", "segment_churn_risk", "value_at_risk"}
PARAMS = ValueParams(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=1)


def message(cfg: Settings, ev: ClickEvent | TransactionEvent, offset: int) -> InMessage:
    topic = cfg.topic_transactions if isinstance(ev, TransactionEvent) else cfg.topic_clickstream
    return InMessage(topic, 0, offset, ev.customer_id.encode(),
                     orjson.dumps(ev.model_dump(by_alias=True)))


def order(cid: str, n: int, day: float) -> TransactionEvent:
    return TransactionEvent.model_validate({"event_id": f"{cid}-o{n}", "customer_id": cid,
                                            "ts": T0 + int(day * DAY_MS), "amount": 40.0,
                                            "currency": "EUR"})


def visit(cid: str, day: float) -> ClickEvent:
    return ClickEvent.model_validate({"event_id": f"{cid}-v{day}", "customer_id": cid,
                                      "ts": T0 + int(day * DAY_MS), "type": "page_view",
                                      "session_id": f"{cid}-s{day}"})


def updates_of(rec: Recorder, cfg: Settings, cid: str) -> list[dict]:
    return [orjson.loads(v) for t, k, v in rec.records
            if t == cfg.topic_segment_updates and k == cid.encode() and v is not None]


async def test_silence__raises_the_risk_band_once_through_the_sweep(settings: Settings) -> None:
    # 200 simulated customers, segmented, clock=event; day-long drift windows
    engine = await seeded_engine(settings.model_copy(update={"drift_windows": "1d",
                                                             "drift_min_customers": 1}))
    cfg, store, rec = engine.settings, engine.store, engine.publisher
    assert isinstance(rec, Recorder) and isinstance(store, RedisFeatureStore)
    try:
        assert engine.assigner.model is not None
        assert engine.leader.value.adopt(PARAMS)  # as a worker adopts the leader's fit
        await sweep(engine, older_than_days=0.0, batch=50)  # everyone's first band: recent buyers

        # a regular buyer: four purchase days in the last month
        await engine.process([message(cfg, order("vip", n, d), 10_000 + n)
                              for n, d in enumerate((2.0, 9.0, 16.0, 23.0))])
        first = updates_of(rec, cfg, "vip")[-1]
        assert first["risk_band"] == "low" and first["value"]["params_version"] == 1
        assert first["value"]["expected_purchases"] > 1.0
        assert (await store.state("vip"))["val_band"] == "low"

        # 200 days later (another customer's event moves the event clock), vip is silent
        # ... but fifty of the others buy again the day before (the drift reference window)
        back = sorted({k.decode() for t, k, v in rec.records if t == cfg.topic_segment_updates
                       and k and k != b"vip"})[:50]
        await engine.process([message(cfg, order(c, 99, 222.0), 19_000 + n)
                              for n, c in enumerate(back)])
        await engine.process([message(cfg, order("other", 1, 223.0), 20_000)])
        published = len(rec.records)
        before = len(updates_of(rec, cfg, "vip"))
        await sweep(engine, older_than_days=0.0, batch=50)
        entered = Counter(u["segment_id"] for t, k, v in rec.records[published:]
                          if t == cfg.topic_segment_updates and v
                          and (u := orjson.loads(v))["risk_band"] == "high"
                          and u["previous_risk_band"] not in (None, "high"))
        changed = updates_of(rec, cfg, "vip")[before:]
        assert len(changed) == 1
        assert (changed[0]["previous_risk_band"], changed[0]["risk_band"]) == ("low", "high")
        assert changed[0]["value"]["churn_risk"] > first["value"]["churn_risk"]
        assert (await store.state("vip"))["val_band"] == "high"

        # a later sweep at the same clock: nothing new to say
        await engine.process([message(cfg, order("other", 2, 224.0), 20_001)])
        await sweep(engine, older_than_days=0.0, batch=50)
        assert len(updates_of(rec, cfg, "vip")) == before + 1

        # the drift report of day 223 against day 222: the moves into the high band the sweep
        # published, counted per segment, and the rise alerted
        model = engine.assigner.model
        reports = engine.drift.close(T0 + 226 * DAY_MS, model.centers_by_id(), model.version,
                                     model.names)
        (day_223,) = [r for r in reports if r.window_start.startswith("2026-08-12")]
        assert sum(entered.values()) > 20
        assert {s.segment_id: s.entered_high_risk for s in day_223.risk
                if s.entered_high_risk} == dict(entered)
        assert day_223.entered_high_risk == sum(entered.values())
        (alert,) = [a for a in day_223.alerts if a.alert == "high_risk_share"]
        assert f"{sum(entered.values())} moved into the high-risk band" in alert.detail
    finally:
        await store.close()


async def test_value_refit_with_customers_unchanged__raises_no_value_alert(settings: Settings) -> None:
    """The leader re-fits the value parameters; no customer changed: the day after the
    re-fit is compared with the day before on the new parameters (both re-scored), and the
    value alerts stay silent although the re-fit moved many published bands into high."""
    engine = await seeded_engine(settings.model_copy(update={"drift_windows": "1d",
                                                             "drift_min_customers": 1}))
    cfg, store, rec = engine.settings, engine.store, engine.publisher
    assert isinstance(rec, Recorder) and isinstance(store, RedisFeatureStore)
    refit = dataclasses.replace(PARAMS, alpha=3 * PARAMS.alpha, a=2.0, b=1.0, version=2)
    try:
        assert engine.leader.value.adopt(PARAMS)
        await sweep(engine, older_than_days=0.0, batch=50)  # day 0: everyone scored with v1
        await engine.process([message(cfg, order("other", 1, 1.5), 20_000)])  # the clock: day 1
        published = len(rec.records)
        assert engine.leader.value.adopt(refit)  # as a worker adopts the leader's re-fit
        await sweep(engine, older_than_days=0.0, batch=50)  # day 1: everyone scored with v2
        entered = sum(1 for t, k, v in rec.records[published:]
                      if t == cfg.topic_segment_updates and v
                      and (u := orjson.loads(v))["risk_band"] == "high"
                      and u["previous_risk_band"] not in (None, "high"))
        # day 3 on both input topics (the drift clock is the slowest partition's): day 1 closes
        await engine.process([message(cfg, order("other", 2, 3.5), 20_001),
                              message(cfg, visit("other", 3.5), 20_002)])
        (day_1,) = [r for r in engine.drift_reports() if r.window_start.startswith("2026-01-02")]
        # as published, the re-fit moved more than 5% of the 200 customers into the high band
        assert entered > 10 and day_1.entered_high_risk == entered
        assert not [a for a in day_1.alerts if a.alert in VALUE_ALERTS], day_1.alerts
        assert day_1.value_basis == "rescored", day_1.value_note
        assert day_1.high_risk_share == pytest.approx(day_1.reference_high_risk_share, abs=0.02)
    finally:
        await store.close()
