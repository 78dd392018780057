"""The explorer's pages against fixed API bodies (Chromium, no worker): exact texts of known
figures (a customer's recent segment changes, ``history``; segment value) and what a short
live run may not show (validation, every kind of drift alert)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from streamseg.api.drift import _example, drift_body
from streamseg.api.lookup import customer_body, segments_body
from streamseg.api.ui import FILES
from streamseg.drift.report import Alert, DriftReport, Migration, SegmentShare, ShareForecast
from streamseg.publish.records import CatalogEntry, SegmentProfile, SegmentValidation, SegmentValue

pytestmark = pytest.mark.integration
ORIGIN = "http://explorer.test"


def entry(sid: int, name: str) -> CatalogEntry:
    profile = SegmentProfile(segment_id=sid, name=name, size=5, share=0.5, means={"monetary_30d": 9.0},
                             zscores={"monetary_30d": 1.2}, top_features=["monetary_30d"],
                             monetary_mean=9.0, model_version=4)
    value = SegmentValue(customers=5, sampled=5, mean_churn_risk=0.125, high_risk_share=0.2,
                         mean_expected_purchases=1.5, mean_lifetime_value=80.0,
                         total_lifetime_value=400.0, value_at_risk=35.0, net_inflow=-2, window_s=60.0,
                         horizon_days=90.0, currency="EUR", params_version=1)
    validation = SegmentValidation(model_version=4, previous_version=3, silhouette=0.41,
                                   model_silhouette=0.3, members=5, share=0.5, stability=0.9,
                                   flags=["small"])
    return CatalogEntry(segment_id=sid, status="active", model_version=4, name=name, profile=profile,
                        updated_ts="2026-01-01T00:00:00.000Z", value=value, validation=validation)


def drift() -> dict[str, Any]:
    """One 1h report with every kind of alert and a migration each way."""
    shares = [SegmentShare(segment_id=s, name=n, customers=10, share=sh, reference_share=ref,
                           active_customers=10, active_share=sh, exits=3)
              for s, n, sh, ref in [(1, "Bargain hunters", 0.3, 0.5), (2, "Window shoppers", 0.7, 0.5)]]
    alerts = [Alert(alert=a, value=0.5, threshold=0.15, detail=f"{a} crossed")
              for a in ["composition_shift", "segment_psi", "feature_psi", "emerging_segment",
                        "population_shrink"]]
    report = DriftReport.model_validate_json(_example("w1", "2026-01-02T00:00:00.000Z", shares))
    report = report.model_copy(update={
        "alerts": alerts, "feature_psi": {"sessions_30d": 0.9, "tenure_days": 0.8},
        "time_driven_features": ["tenure_days"],
        "migrations": [Migration(from_segment=1, to_segment=2, customers=4),
                       Migration(from_segment=2, to_segment=1, customers=1)],
        "forecast": [ShareForecast(segment_id=1, one_window_ahead=0.25, two_windows_ahead=0.2)]})
    return drift_body({"1h": [report.to_bytes()], "1d": []})


def bodies() -> dict[str, Any]:
    catalog = segments_body({1: entry(1, "Bargain hunters"), 2: entry(2, "Window shoppers")},
                            {1: 5, 2: 5}, model_version=4)
    customer = customer_body("c-7", {"last_ts": 0.0, "first_ts": 0.0, "seg": 2.0, "seg_dist": 0.4,
                                     "seg_version": 4.0}, names={2: "Window shoppers"}, now_ms=0.0)
    # the contract of the customer-history issue: newest first
    customer["value"] = {"p_alive": 0.9, "churn_risk": 0.25, "expected_purchases": 1.2,
                         "horizon_days": 90.0, "lifetime_value": 55.0, "currency": "EUR",
                         "risk_band": "medium", "params_version": 1}
    customer["history"] = [
        {"ts_ms": 1_767_312_000_000, "from_segment": 1, "to_segment": 2, "model_version": 4},
        {"ts_ms": 1_767_225_600_000, "from_segment": None, "to_segment": 1, "model_version": 3}]
    return {"/v1/segments": catalog, "/v1/drift": drift(), "/v1/customers/c-7": customer}


@pytest.fixture
async def page(chromium: Any) -> AsyncIterator[Any]:
    """A tab on a fake origin whose API answers :func:`bodies` to the token ``t-0123``;
    ``page.errors`` collects console errors and uncaught exceptions."""
    served = bodies()
    ui = resources.files("streamseg.api").joinpath("ui")

    async def answer(route: Any) -> None:
        path = urlsplit(route.request.url).path
        name = path.removeprefix("/ui/") or "index.html"
        if path.startswith("/ui/") and name in FILES:
            await route.fulfill(body=ui.joinpath(name).read_bytes(), content_type=FILES[name])
        elif path in served and route.request.headers.get("authorization") == "Bearer t-0123":
            await route.fulfill(body=orjson.dumps(served[path]), content_type="application/json")
        else:
            await route.fulfill(status=404, body=b'{"error": {"code": "not_found", "message": "?"}}')

    context = await chromium.new_context()
    try:
        tab = await context.new_page()
        tab.errors = []
        tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: tab.errors.append(str(e)))
        await context.route(f"{ORIGIN}/**", answer)
        await tab.goto(f"{ORIGIN}/ui/#token=t-0123")  # the address streamseg dev prints
        await tab.locator("[data-testid=total-customers]").wait_for()
        yield tab
    finally:
        await context.close()


async def test_customer_page__lists_recent_segment_changes_newest_first(page: Any) -> None:
    await page.fill("#lookup-id", "c-7")
    await page.click("#lookup button")
    rows = page.locator("[data-testid=history] tbody tr")
    await rows.first.wait_for()
    assert await rows.all_inner_texts() == [
        "2026-01-02 00:00:00\tBargain hunters\tWindow shoppers\t4",
        "2026-01-01 00:00:00\t(first assignment)\tBargain hunters\t3"]
    assert await page.locator("[data-testid=customer-segment] a").inner_text() == "Window shoppers"
    assert "25.0%" in await page.locator("main").inner_text()  # the customer's churn risk
    assert page.errors == []


async def test_pages__show_value_validation_flows_and_what_each_alert_touches(page: Any) -> None:
    overview = await page.locator("[data-testid=segments]").inner_text()
    assert "12.5%" in overview and "€80.00" in overview  # mean churn risk, mean lifetime value

    await page.click("a[data-segment='1']")
    await page.locator("[data-testid=flow-chart]").wait_for()
    assert await page.locator("[data-testid=churn-risk]").inner_text() == "12.5%"
    assert await page.locator("[data-testid=silhouette]").inner_text() == "0.41"
    assert await page.locator("[data-testid=flow-chart] path.flow.out").count() == 1
    assert await page.locator("[data-testid=flow-chart] path.flow.in").count() == 1

    await page.click("nav a[data-nav=drift]")
    alerts = page.locator("[data-testid=alert]")
    await alerts.first.wait_for()
    touched = dict(zip(["composition_shift", "segment_psi", "feature_psi", "emerging_segment",
                        "population_shrink"], await alerts.all_inner_texts(), strict=True))
    assert "Window shoppers +20.0%" in touched["composition_shift"]
    assert "Bargain hunters -20.0%" in touched["segment_psi"]
    assert "sessions_30d (PSI 0.90)" in touched["feature_psi"]
    assert "tenure_days" not in touched["feature_psi"].split("touches:")[1]  # time-driven
    assert "Bargain hunters 3 gone" in touched["population_shrink"]
    assert page.errors == []
