"""The explorer's pages against fixed API bodies (Chromium, no worker): fields a live run
may not show yet, such as a customer's recent segment changes (``history``)."""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from streamseg.api.drift import drift_body
from streamseg.api.lookup import customer_body, segments_body
from streamseg.api.ui import FILES
from streamseg.publish.records import CatalogEntry, SegmentProfile

pytestmark = pytest.mark.integration
ORIGIN = "http://explorer.test"


def entry(sid: int, name: str) -> CatalogEntry:
    profile = SegmentProfile(segment_id=sid, name=name, size=5, share=0.5, means={"monetary_30d": 9.0},
                             zscores={"monetary_30d": 1.2}, top_features=["monetary_30d"],
                             monetary_mean=9.0, model_version=4)
    return CatalogEntry(segment_id=sid, status="active", model_version=4, name=name, profile=profile,
                        updated_ts="2026-01-01T00:00:00.000Z")


def bodies() -> dict[str, Any]:
    catalog = segments_body({1: entry(1, "Bargain hunters"), 2: entry(2, "Window shoppers")},
                            {1: 5, 2: 5}, model_version=4)
    customer = customer_body("c-7", {"last_ts": 0.0, "first_ts": 0.0, "seg": 2.0, "seg_dist": 0.4,
                                     "seg_version": 4.0}, names={2: "Window shoppers"}, now_ms=0.0)
    # the contract of the customer-history issue: newest first
    customer["history"] = [
        {"ts_ms": 1_767_312_000_000, "from_segment": 1, "to_segment": 2, "model_version": 4},
        {"ts_ms": 1_767_225_600_000, "from_segment": None, "to_segment": 1, "model_version": 3}]
    return {"/v1/segments": catalog, "/v1/drift": drift_body({"1h": []}), "/v1/customers/c-7": customer}


async def test_customer_page__lists_recent_segment_changes_newest_first(chromium: Any) -> None:
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
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await context.route(f"{ORIGIN}/**", answer)
        await page.goto(f"{ORIGIN}/ui/#token=t-0123")
        await page.locator("[data-testid=total-customers]").wait_for()
        await page.fill("#lookup-id", "c-7")
        await page.click("#lookup button")
        rows = page.locator("[data-testid=history] tbody tr")
        await rows.first.wait_for()
        assert await rows.all_inner_texts() == [
            "2026-01-02 00:00:00\tBargain hunters\tWindow shoppers\t4",
            "2026-01-01 00:00:00\t(first assignment)\tBargain hunters\t3"]
        assert await page.locator("[data-testid=customer-segment] a").inner_text() == "Window shoppers"
        assert errors == []
    finally:
        await context.close()
