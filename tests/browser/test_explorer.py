"""The segment explorer (/ui) in Debian's Chromium, against a real worker fed by the generator.

One worker for the module (Apache Kafka + Valkey from the session's stack), fed
a week of generated history; each test opens its own browser context and fails
on any console error the page logged. The leader fits the customer-value model on
that history in the background (PyTensor's compile makes it tens of seconds), so the
test that checks value figures runs last and waits for them, the others meanwhile.
Screenshots of each page land in ``build/explorer-screenshots/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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
#: The history ends at 06:00 UTC a day or two before now (event time), the newcomers' half day
#: after it by 18:00 the same day: still history (hours behind the wall clock), but never across
#: a step of it (every 24 h of event time from the epoch, streamseg/leader/pace.py), whose
#: re-fit may merge or retire a segment while the figure is watched, whatever the hour the
#: tests run at.
END_MS = (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS + DAY_MS // 4


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
        await wait_until(history_over(ex), 150, lambda: "the leader's timers back after the "
                         f"history's last step\n{worker.log()[-3000:]}")
        yield ex
    finally:
        worker.stop()


def history_over(ex: Explorer) -> Callable[[], Awaitable[bool]]:
    """A condition: the catalog was published three more times under one model version.

    5 s after the history's last batch the leader runs a last step on it (a re-fit, which
    here merges a segment more often than not) and its wall-clock timers resume, the catalog
    refresh every ``catalog_refresh_s`` (streamseg/leader/pace.py). A merged or retired
    segment's customers keep its id until they are evaluated again (docs/user-guide.md), so
    the overview's "customers in live segments" drops by them: read before that, a figure
    would wait for 60 newcomers to make up for 70-90 customers (seen). Three catalogs under
    one version: the last step has published, and a timer's refresh after it (the timers and
    the step share one lock) found nothing to change.
    """
    version: list[int] = []
    stamps: set[str] = set()

    async def over() -> bool:
        _, catalog = await ex.get("/v1/segments")
        stamp = max((s["updated_ts"] for s in catalog.get("segments", [])), default="")
        if version != [catalog.get("model_version")]:
            version[:] = [catalog.get("model_version")]
            stamps.clear()
            stamps.add(stamp)  # as first seen: maybe the history's, not a timer's
            return False
        stamps.add(stamp)
        return len(stamps) > 3

    return over


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
    await shot(page, "overview-warming-up")

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


async def test_wrong_token__is_rejected_and_shows_no_data(page: Any, explorer: Explorer) -> None:
    await sign_in(page, explorer, token="not-the-token-0123456789")
    await page.locator("#login-error").filter(has_text="not valid").wait_for()
    assert await page.locator("[data-testid=total-customers]").count() == 0
    assert await page.evaluate("sessionStorage.getItem('streamseg.token')") is None
    await shot(page, "wrong-token")


#: The page's formats, in the browser's own Intl and toFixed (not app.js's helpers): a
#: share as "12.3%", money as "€1,234.56" in the figure's currency.
FORMAT = """([x, currency]) => x === null ? "\\u2013" : currency === null ? (100 * x).toFixed(1) + "%"
    : Number(x).toLocaleString("en", {style: "currency", currency, maximumFractionDigits: 2})"""
DASH = "\u2013"  # what the page shows for a figure it does not have
#: Each card's figure by its label, read in one go (the page re-renders as it polls).
CARDS = """() => Object.fromEntries([...document.querySelectorAll("main .card")].map(
    (c) => [c.querySelector(".k").textContent, c.querySelector(".v").textContent]))"""


async def fmt(page: Any, x: float | None, currency: str | None = None) -> str:
    """``x`` as the page shows it: a share (no currency) or an amount in ``currency``."""
    return str(await page.evaluate(FORMAT, [x, currency]))


async def valued(explorer: Explorer) -> None:
    """Wait until the leader fitted customer value and the catalog's live segments carry it."""
    seen: list[Any] = []

    async def carried() -> bool:
        _, catalog = await explorer.get("/v1/segments")
        seen[:] = [s for s in catalog["segments"] if s["status"] not in ("retired", "merged")]
        return bool(seen) and all(s["value"] for s in seen if s["size"])

    await wait_until(carried, 240, lambda: f"customer value in the catalog; live segments "
                     f"{str(seen)[:1500]}\n{explorer.worker.log()[-3000:]}")


async def overview_shows_value(page: Any, explorer: Explorer) -> None:
    """Every live row's churn-risk and lifetime-value cells show the catalog's figures."""
    seen: list[Any] = []

    async def shown() -> bool:
        _, catalog = await explorer.get("/v1/segments")
        want = {}
        for seg in catalog["segments"]:
            if seg["status"] not in ("retired", "merged"):
                v = seg["value"] or {"mean_churn_risk": None, "mean_lifetime_value": None,
                                     "currency": None}
                want[str(seg["segment_id"])] = [
                    await fmt(page, v["mean_churn_risk"]),
                    await fmt(page, v["mean_lifetime_value"], v["currency"] or "EUR")]
        got = await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
            "[data-testid=segments] tbody tr")].map((r) => [r.dataset.segmentRow,
            [r.cells[4].textContent, r.cells[5].textContent]]))""")
        seen[:] = [want, got]
        return got == want and any(DASH not in cells for cells in want.values())

    await wait_until(shown, 30, lambda: f"the catalog's value figures on the overview "
                     f"(wanted, shown): {seen}")


async def segment_shows_value(page: Any, explorer: Explorer, sid: int) -> None:
    """The segment page's value and risk cards show the catalog's figures for ``sid``."""
    seen: list[Any] = []

    async def shown() -> bool:
        _, catalog = await explorer.get("/v1/segments")
        (v,) = [s["value"] for s in catalog["segments"] if s["segment_id"] == sid]
        cur = v["currency"]
        want = {"mean churn risk": await fmt(page, v["mean_churn_risk"]),
                "high-risk share": await fmt(page, v["high_risk_share"]),
                f"mean lifetime value ({v['horizon_days']:g} d)":
                    await fmt(page, v["mean_lifetime_value"], cur),
                "total lifetime value": await fmt(page, v["total_lifetime_value"], cur),
                "value at risk": await fmt(page, v["value_at_risk"], cur)}
        cards = await page.evaluate(CARDS)
        seen[:] = [want, cards]
        return all(cards.get(k) == x for k, x in want.items())

    await wait_until(shown, 30, lambda: f"segment {sid}'s value cards (wanted, shown): {seen}")


async def customer_shows_value_and_history(page: Any, explorer: Explorer, cid: str) -> None:
    """The customer page shows the lookup's value, and its history as the lookup has it:
    as many rows, the newest a real first assignment or move from the stream."""
    seen: list[Any] = []

    async def shown() -> bool:
        status, body = await explorer.get(f"/v1/customers/{cid}")
        assert status == 200 and body["value"] is not None and body["history"], body
        v, new = body["value"], body["history"][0]
        want = {"churn risk": await fmt(page, v["churn_risk"]), "risk band": v["risk_band"],
                "lifetime value": await fmt(page, v["lifetime_value"], v["currency"]),
                "history": [datetime.fromtimestamp(new["ts_ms"] / 1000, UTC).strftime(
                    "%Y-%m-%d %H:%M:%S"), new["from_segment"], new["to_segment"],
                    str(new["model_version"]), len(body["history"])]}
        got = {k: x for k, x in (await page.evaluate(CARDS)).items() if k in want}
        got["history"] = await page.evaluate("""() => {
            const rows = document.querySelectorAll("[data-testid=history] tbody tr");
            if (!rows.length) return null;
            const [when, from, to, version] = rows[0].cells, link = (td) => td.querySelector("a");
            return [when.textContent, from.textContent === "(first assignment)" ? null
                    : Number(link(from).dataset.segment), Number(link(to).dataset.segment),
                    version.textContent, rows.length]; }""")
        seen[:] = [want, got]
        return got == want and new["to_segment"] == body["segment_id"]

    await wait_until(shown, 30, lambda: f"customer {cid}'s value and history (wanted, shown): "
                     f"{seen}")


async def member_of(explorer: Explorer, sid: int) -> str:
    """A generated customer in segment ``sid``: the first who bought (value from their own
    orders), else the first."""
    members = []
    for cid in sorted(explorer.truth):
        status, body = await explorer.get(f"/v1/customers/{cid}")
        if status == 200 and body["segment_id"] == sid:
            if body["features"].get("orders_total", 0) > 0:
                return cid
            members.append(cid)
    assert members, f"no generated customer in segment {sid}"
    return members[0]


async def test_click__goes_from_the_overview_to_a_segment_and_to_one_of_its_customers(
        page: Any, explorer: Explorer) -> None:
    """Runs last: the leader's value fit went on while the other tests ran."""
    await valued(explorer)
    await sign_in(page, explorer)
    await overview_shows_value(page, explorer)
    await shot(page, "overview")
    await page.screenshot(path=str(SCREENSHOTS / "overview-viewport.png"))  # docs/img/explorer.png
    link = page.locator("[data-testid=segments] tbody tr a[data-segment]").first
    name, sid = await link.inner_text(), int(await link.get_attribute("data-segment"))
    await link.click()
    assert (await page.locator("[data-testid=segment-name]").inner_text()).startswith(name)
    await page.locator("[data-testid=profile-chart]").wait_for()
    assert await page.locator("[data-testid=name-explanation]").inner_text() != ""
    await segment_shows_value(page, explorer, sid)
    await shot(page, "segment")

    cid = await member_of(explorer, sid)
    await page.fill("[data-testid=segment-lookup]", cid)
    await page.click("main form.lookup button")
    await page.locator("[data-testid=customer-id]").wait_for()
    assert await page.locator("[data-testid=customer-id]").inner_text() == cid
    assert await page.locator("[data-testid=customer-segment] a").inner_text() == name
    assert await page.locator("[data-testid=features] tbody tr").count() > 5
    await customer_shows_value_and_history(page, explorer, cid)
    await shot(page, "customer")
    assert page.errors == []
