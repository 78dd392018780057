"""The segment explorer's server side: its open static files, ``GET /v1/drift``'s body, and
the explanation of a segment's name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from streamseg.api.auth import TokenAuth
from streamseg.api.drift import _example, drift_body
from streamseg.api.lookup import segment_body
from streamseg.api.middleware import api_middleware
from streamseg.api.server import build
from streamseg.api.ui import UiFiles
from streamseg.drift.report import Alert, DriftReport, Migration, SegmentShare
from streamseg.metrics import ApiMetrics
from streamseg.publish.records import CatalogEntry, SegmentProfile
from streamseg.segmenting.naming import name_reasons
from streamseg.settings import Settings
from tests.openapi_check import assert_matches_openapi

SECRET = "s3cret-0123456789abcdef"
pytestmark = pytest.mark.usefixtures("clean_env")  # no STREAMSEG_* from the shell


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    """The explorer's routes behind the API middleware, next to one data route."""
    async def data(request: web.Request) -> web.Response:
        return web.json_response({"windows": []})

    ui = UiFiles()

    async def file(request: web.Request) -> web.Response:
        return await ui.get(request, request.match_info["name"])

    app = web.Application(middlewares=[api_middleware(TokenAuth({SECRET: "ops"}),
                                                      ApiMetrics(CollectorRegistry()))])
    app.router.add_get("/ui", ui.get)
    app.router.add_get("/ui/", ui.get)
    app.router.add_get("/ui/{name}", file)
    app.router.add_get("/v1/drift", data)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_explorer_files__are_served_without_a_token_while_its_data_needs_one(
        client: TestClient) -> None:
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/ui/"
    resp = await client.get("/ui/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert '<script src="app.js">' in await resp.text()
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css")]:
        resp = await client.get("/ui/" + name)
        assert (resp.status, resp.content_type) == (200, kind)
    assert (await client.get("/v1/drift")).status == 401
    assert (await client.get("/v1/drift", headers={"Authorization": f"Bearer {SECRET}"})).status == 200


async def test_explorer__serves_only_its_own_files(client: TestClient) -> None:
    for path in ["/ui/secret.txt", "/ui/..%2Fopenapi.json", "/ui/%2E%2E%2Fauth.py"]:
        resp = await client.get(path)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found", path


def report(worker: str, end: str, counts: dict[int, int], **kw: object) -> bytes:
    raw = _example(worker, end, [SegmentShare(segment_id=s, name=f"S{s}", customers=n, share=0.5,
                                              reference_share=0.5, active_customers=n)
                                 for s, n in counts.items()])
    return DriftReport.model_validate_json(raw).model_copy(update=kw).to_bytes()


def test_drift_body__latest_report_per_worker_and_shares_summed_over_workers() -> None:
    alert = Alert(alert="composition_shift", value=0.3, threshold=0.15, detail="30% would move")
    kept = {"1h": [report("a", "T3", {0: 1, 1: 3}, alerts=[alert],
                          migrations=[Migration(from_segment=0, to_segment=1, customers=2)]),
                   b"{not a report", report("b", "T2", {0: 2}), report("a", "T2", {0: 2, 1: 0}),
                   report("a", "T1", {1: 5})],
            "1d": []}
    body = drift_body(kept)
    assert_matches_openapi("/v1/drift", "get", 200, body)
    hour, day = body["windows"]
    assert (hour["window"], hour["kept"], day) == ("1h", 4, {
        "window": "1d", "kept": 0, "latest": [], "shares": {"window_ends": [], "segments": []}})
    assert [(r["worker"], r["window_end"]) for r in hour["latest"]] == [("a", "T3"), ("b", "T2")]
    assert hour["latest"][0]["alerts"][0]["detail"] == "30% would move"
    assert hour["latest"][0]["schema"] == "streamseg.drift.v1"
    assert hour["shares"] == {"window_ends": ["T1", "T2", "T3"], "segments": [
        {"segment_id": 0, "name": "S0", "active_share": [None, 1.0, 0.25]},
        {"segment_id": 1, "name": "S1", "active_share": [1.0, 0.0, 0.75]}]}


def test_segment_body__carries_the_catalog_s_reason_for_the_name() -> None:
    profile = SegmentProfile(segment_id=1, name="Bargain hunters", size=5, share=0.5,
                             means={}, zscores={"discount_share": 2.0}, top_features=["discount_share"],
                             monetary_mean=0.0, model_version=2)
    live = CatalogEntry(segment_id=1, status="active", model_version=2, name="Bargain hunters",
                        profile=profile, updated_ts="2026-01-01T00:00:00.000Z",
                        name_reason=name_reasons({1: "Bargain hunters"}, {1: profile.zscores})[1])
    body = segment_body(live, 5)
    assert_matches_openapi("/v1/segments/{segment_id}", "get", 200, body)
    assert body["name_reason"].startswith("'Bargain hunters' fits best: its rule scores 2.0")
    assert body["size"] == 5


def test_standalone_api__serves_the_explorer_and_drift_as_a_worker_does() -> None:
    app = build(Settings(api_tokens=f"ops:{SECRET}"))  # connects to nothing until served
    served = {(r.resource.canonical, r.method) for r in app.router.routes()}
    assert {("/ui", "GET"), ("/ui/", "GET"), ("/ui/{name}", "GET"), ("/v1/drift", "GET")} <= served
