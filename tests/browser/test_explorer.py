"""The segment explorer (/ui) in Debian's Chromium, against a real worker fed by the generator.

One worker for the module (Apache Kafka + Valkey from the session's stack), fed
a week of generated history; each test opens its own browser context and fails
on any console error the page logged. Screenshots of each page land in
``build/explorer-screenshots/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamseg.devstack import DevStack
from streamseg.generate.personas import DAY_MS, assign_personas
from streamseg.generate.producer import produce
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.integration.conftest import WorkerProcess, unique_settings
from tests.integration.test_worker_end_to_end import processed_count
from tests.support import wait_until

from .conftest import SCREENSHOTS

pytestmark = pytest.mark.integration

TOKEN = "explorer-token-0123456789abcdef"
#: The history ends a day before now (event time), the live phase half a day later.
END_MS = int(time.time() * 1000) - DAY_MS


@dataclass
class Explorer:
    settings: Settings
    worker: WorkerProcess
    truth: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(
                self.base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            return resp.status, await resp.json()


@pytest.fixture(scope="module")
async def explorer(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Explorer]:
    """A worker with a token, after a week of 300 generated customers was processed: live
    segments with profiles in the catalog and at least one drift report kept."""
    settings = unique_settings(stack, api_tokens=f"ops:{TOKEN}", catalog_refresh_s=2.0,
                               n_segments=4, model_warmup=100, topic_partitions=1,
                               drift_windows="6h,1d", drift_min_customers=20)
    await ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("explorer")).start()
    try:
        ex = Explorer(settings, worker, assign_personas(300, seed=22))
        sent = await produce(settings, ex.truth, days=7, seed=22, rate=None, duration=None,
                             end_ms=END_MS)
        await wait_until(lambda: processed_count(settings) >= sent.events_produced, 120,
                         lambda: "the week of history processed\n" + worker.log()[-3000:])

        seen: list[Any] = []

        async def segments_and_drift() -> bool:
            seen[:] = [await ex.get("/v1/segments"), await ex.get("/v1/drift")]
            (_, catalog), (_, drift) = seen
            profiled = [s for s in catalog.get("segments", []) if s["profile"] and s["size"]]
            return len(profiled) >= 2 and any(w["latest"] for w in drift.get("windows", []))

        await wait_until(segments_and_drift, 120, lambda: f"live segments and a drift report; "
                         f"last answers {str(seen)[:1500]}\n{worker.log()[-3000:]}")
        yield ex
    finally:
        worker.stop()


@pytest.fixture
async def page(chromium: Any, explorer: Explorer) -> AsyncIterator[Any]:
    """A fresh tab; ``page.errors`` collects console errors and uncaught exceptions."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    tab = await context.new_page()
    tab.errors = []
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    yield tab
    await context.close()


async def sign_in(page: Any, explorer: Explorer, token: str = TOKEN) -> None:
    await page.goto(explorer.base + "/ui/")
    await page.fill("#token", token)
    await page.click("#login-form button")


async def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def live_names(explorer: Explorer) -> set[str]:
    _, catalog = await explorer.get("/v1/segments")
    return {s["name"] for s in catalog["segments"] if s["status"] not in ("retired", "merged")}


async def test_pages__load_without_console_errors_and_show_the_live_segments(
        page: Any, explorer: Explorer) -> None:
    await sign_in(page, explorer)
    await page.wait_for_selector("[data-testid=segments] tbody tr")
    shown = set(await page.locator("[data-testid=segments] tbody td:first-child a").all_inner_texts())
    assert shown == await live_names(explorer)
    assert await page.locator("svg.sparkline").count() >= 1  # share over the kept windows
    await shot(page, "overview")

    await page.click("nav a[data-nav=drift]")
    await page.wait_for_selector("[data-testid^=report-]")
    assert "windows" in await page.locator("main h2").first.inner_text()
    await shot(page, "drift")
    assert page.errors == []


async def test_overview__updates_a_live_figure_while_events_flow(page: Any, explorer: Explorer) -> None:
    await sign_in(page, explorer)
    total = page.locator("[data-testid=total-customers]")
    await total.wait_for()
    before = int((await total.inner_text()).replace(",", ""))
    newcomers = {f"n{i:05d}": p for i, p in enumerate(assign_personas(60, seed=23).values())}
    flowing = asyncio.ensure_future(produce(
        explorer.settings, newcomers, days=0.5, seed=23, rate=40.0, duration=None,
        end_ms=END_MS + DAY_MS // 2))
    try:
        # the page is never reloaded: only its own polling can change the figure
        await page.wait_for_function(
            "before => Number(document.querySelector('[data-testid=total-customers]')"
            ".textContent.replace(/,/g, '')) > before", arg=before, timeout=60_000)
    finally:
        await flowing
    assert not flowing.exception()
    assert page.errors == []


async def member_of(explorer: Explorer, sid: int) -> str:
    for cid in sorted(explorer.truth):
        status, body = await explorer.get(f"/v1/customers/{cid}")
        if status == 200 and body["segment_id"] == sid:
            return cid
    raise AssertionError(f"no generated customer in segment {sid}")


async def test_click__goes_from_the_overview_to_a_segment_and_to_one_of_its_customers(
        page: Any, explorer: Explorer) -> None:
    await sign_in(page, explorer)
    link = page.locator("[data-testid=segments] tbody tr a[data-segment]").first
    name, sid = await link.inner_text(), int(await link.get_attribute("data-segment"))
    await link.click()
    assert (await page.locator("[data-testid=segment-name]").inner_text()).startswith(name)
    await page.locator("[data-testid=profile-chart]").wait_for()
    assert await page.locator("[data-testid=name-explanation]").inner_text() != ""
    await shot(page, "segment")

    cid = await member_of(explorer, sid)
    await page.fill("[data-testid=segment-lookup]", cid)
    await page.click("main form.lookup button")
    await page.locator("[data-testid=customer-id]").wait_for()
    assert await page.locator("[data-testid=customer-id]").inner_text() == cid
    assert await page.locator("[data-testid=customer-segment] a").inner_text() == name
    assert await page.locator("[data-testid=features] tbody tr").count() > 5
    await shot(page, "customer")
    assert page.errors == []


async def test_wrong_token__is_rejected_and_shows_no_data(page: Any, explorer: Explorer) -> None:
    await sign_in(page, explorer, token="not-the-token-0123456789")
    await page.locator("#login-error").filter(has_text="not valid").wait_for()
    assert await page.locator("[data-testid=total-customers]").count() == 0
    assert await page.evaluate("sessionStorage.getItem('streamseg.token')") is None
    await shot(page, "wrong-token")
