"""The HTTP API of a real worker on the real broker and Valkey: lookup, catalog, auth, erasure."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from streamseg.devstack import DevStack, free_port
from streamseg.events.models import parse_ts
from streamseg.features.keys import Keys
from streamseg.publish.records import CatalogEntry
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.openapi_check import assert_matches_openapi, document
from tests.support import wait_until

from .conftest import WorkerProcess, consume, produce, settings_env, unique_settings
from .test_worker_end_to_end import processed_count, workload

pytestmark = pytest.mark.integration

OPS = "ops-token-0123456789abcdef"
SVC = "svc-token-0123456789abcdef"
CUSTOMERS = 60


@dataclass
class Served:
    settings: Settings
    worker: WorkerProcess
    records: list[tuple[str, bytes, bytes]]
    ready_before_events: tuple[int, dict[str, Any]]
    updates: list[dict[str, Any]]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"


async def call(served: Served, method: str, path: str, token: str | None = OPS,
               ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, \
            http.request(method, served.base + path, headers=headers) as resp:
        raw = await resp.read()
        body = orjson.loads(raw) if resp.content_type == "application/json" else raw.decode()
        return resp.status, body, resp.headers


@pytest.fixture(scope="module")
async def served(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """One worker for the module, with tokens, after it assigned every customer."""
    settings = unique_settings(stack, api_tokens=f"ops:{OPS},svc:{SVC}", catalog_refresh_s=3.0)
    await ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("api")).start()
    try:
        served = Served(settings, worker, workload(settings, CUSTOMERS), (0, {}), [])
        ready: list[tuple[int, Any]] = []

        async def answered() -> bool:
            try:
                status, body, _ = await call(served, "GET", "/readyz", token=None)
            except aiohttp.ClientError:
                return False
            ready.append((status, body))
            return True

        await wait_until(answered, 30, "the worker to answer /readyz")
        served.ready_before_events = ready[-1]
        await produce(settings, served.records)
        await wait_until(lambda: processed_count(settings) >= len(served.records), 90,
                         "every event of the module processed")
        # every event is in: no membership changes after these
        served.updates = await consume(settings, settings.topic_segment_updates, until=CUSTOMERS,
                                       timeout=60, settle=1.0)
        assert len({u["key"] for u in served.updates}) == CUSTOMERS, worker.log()[-3000:]
        yield served
    finally:
        worker.stop()


def latest_updates(served: Served) -> dict[str, dict[str, Any]]:
    return {u["key"].decode(): u["value"] for u in served.updates}


def events_of(served: Served, cid: str) -> list[tuple[str, bytes, bytes]]:
    return [r for r in served.records if r[1] == cid.encode()]


async def test_readyz__names_the_missing_model_until_warm_then_is_ready(served: Served) -> None:
    status, body = served.ready_before_events
    assert status == 503 and body["checks"] == {"broker": True, "redis": True, "model": False}
    assert_matches_openapi("/readyz", "get", status, body)
    status, body, _ = await call(served, "GET", "/readyz", token=None)
    assert status == 200 and body["ready"] and body["model_version"] >= 1
    assert_matches_openapi("/readyz", "get", status, body)


async def test_customer_lookup__serves_the_published_membership_and_current_features(
    served: Served,
) -> None:
    latest = latest_updates(served)
    for cid in ["c0000", "c0001", "c0002", "c0030"]:  # one of each planted group and more
        status, body, _ = await call(served, "GET", f"/v1/customers/{cid}")
        assert status == 200, body
        assert_matches_openapi("/v1/customers/{customer_id}", "get", status, body)
        published = latest[cid]
        assert (body["segment_id"], body["distance"], body["model_version"]) == (
            published["segment_id"], pytest.approx(published["distance"]), published["model_version"])
        assert body["segment_name"]
        assert body["features"]["events_total"] == len(events_of(served, cid))
        assert body["reasons"] == published.get("reasons", [])
        history = body["history"]
        assert history and all(h["to_segment_name"] for h in history)  # names: the catalog's now
        assert [{k: v for k, v in h.items() if not k.endswith("_name")} for h in history] == \
            history_of(served, cid)


def history_of(served: Served, cid: str) -> list[dict[str, Any]]:
    """The segment changes published for ``cid`` (risk-band changes left out), newest first,
    as the lookup's ``history`` shows them (segment names aside)."""
    moves = [u["value"] for u in served.updates if u["key"] == cid.encode()
             and u["value"]["segment_id"] != u["value"]["previous_segment_id"]]
    return [{"ts_ms": parse_ts(m["event_ts"]), "from_segment": m["previous_segment_id"],
             "to_segment": m["segment_id"], "model_version": m["model_version"],
             "cause": m["reasons"][0]["feature"] if m["reasons"] else None}
            for m in reversed(moves)][:served.settings.customer_history]


async def test_unknown_customer__is_a_404_json_error(served: Served) -> None:
    status, body, _ = await call(served, "GET", "/v1/customers/nobody-here")
    assert status == 404 and body["error"]["code"] == "customer_not_found"
    assert "nobody-here" in body["error"]["message"]
    assert_matches_openapi("/v1/customers/{customer_id}", "get", status, body)
    status, body, _ = await call(served, "GET", "/v1/customers/" + "x" * 200)
    assert status == 400 and body["error"]["code"] == "invalid_customer_id"


async def test_v1__needs_a_valid_bearer_token_while_probes_and_the_contract_stay_open(
    served: Served,
) -> None:
    paths = {"/v1/customers/c0000": "/v1/customers/{customer_id}", "/v1/segments": "/v1/segments",
             "/v1/segments/0": "/v1/segments/{segment_id}"}
    for path, template in paths.items():
        for token, code in [(None, "missing_token"), ("wrong-token-0123456789", "invalid_token")]:
            status, body, headers = await call(served, "GET", path, token=token)
            assert (status, body["error"]["code"]) == (401, code), path
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert_matches_openapi(template, "get", status, body)
        status, _, _ = await call(served, "GET", path, token=OPS)
        assert status in (200, 404), path  # let in (segment 0 may not be catalogued yet)
    status, _, _ = await call(served, "DELETE", "/v1/customers/c0000", token=None)
    assert status == 401
    for path in ["/healthz", "/readyz", "/v1/openapi.json", "/metrics"]:
        status, _, _ = await call(served, "GET", path, token=None)
        assert status == 200, path
    status, body, _ = await call(served, "GET", "/v1/openapi.json", token=None)
    assert body == document()


async def stored_catalog(settings: Settings) -> tuple[dict[int, dict[str, Any]], dict[int, int]]:
    """What the engine wrote: catalog entries and live sizes, straight from Redis."""
    keys = Keys(settings.key_prefix)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        raw = await client.hgetall(keys.catalog())
        sizes = await client.hgetall(keys.segment_sizes())
    finally:
        await client.aclose()
    return ({int(k): CatalogEntry.model_validate_json(v).model_dump() for k, v in raw.items()},
            {int(k): int(v) for k, v in sizes.items()})


def stored_part(entry: dict[str, Any]) -> dict[str, Any]:
    """A served segment without what the API adds to the stored entry (its live size)."""
    return {k: v for k, v in entry.items() if k != "size"}


async def test_segments__serve_the_catalog_the_worker_wrote_with_live_sizes(served: Served) -> None:
    s = served.settings

    async def catalog_covers_every_member_with_profiles() -> bool:
        # profiles come with the leader's periodic refresh (every 3 s here), after the first model
        catalog, sizes = await stored_catalog(s)
        return (bool(catalog) and {sid for sid, n in sizes.items() if n > 0} <= set(catalog)
                and any(e["profile"] for e in catalog.values()))

    await wait_until(catalog_covers_every_member_with_profiles, 60,
                     "a catalog covering every member, with profiles")
    for _ in range(5):  # the leader may republish in between: compare against one snapshot
        status, body, _ = await call(served, "GET", "/v1/segments")
        catalog, sizes = await stored_catalog(s)
        served_entries = {seg["segment_id"]: seg for seg in body["segments"]}
        if {sid: stored_part(e) for sid, e in served_entries.items()} == catalog:
            break
    assert status == 200
    assert_matches_openapi("/v1/segments", "get", status, body)
    assert {sid: stored_part(e) for sid, e in served_entries.items()} == catalog
    assert all(e["name_reason"] for e in served_entries.values()
               if e["status"] not in ("merged", "retired")), \
        "every live segment says why it has its name"
    assert {sid: e["size"] for sid, e in served_entries.items()} == {
        sid: sizes.get(sid, 0) for sid in catalog}
    assert sum(e["size"] for e in served_entries.values()) == CUSTOMERS
    assert any(e["profile"] for e in served_entries.values()), "the worker profiles its segments"

    sid = max(sizes, key=lambda k: sizes[k])
    status, body, _ = await call(served, "GET", f"/v1/segments/{sid}")
    assert status == 200 and body["name"] == catalog[sid]["name"] and body["size"] == sizes[sid]
    assert_matches_openapi("/v1/segments/{segment_id}", "get", status, body)
    for path, code, want in [("/v1/segments/7777", 404, "segment_not_found"),
                             ("/v1/segments/abc", 400, "invalid_segment_id")]:
        status, body, _ = await call(served, "GET", path)
        assert (status, body["error"]["code"]) == (code, want)
        assert_matches_openapi("/v1/segments/{segment_id}", "get", status, body)

    status, body, _ = await call(served, "GET", "/v1/customers/c0003")
    catalog, _ = await stored_catalog(s)
    assert body["segment_name"] == catalog[body["segment_id"]]["name"]


async def redis_view(settings: Settings, cid: str) -> tuple[int, dict[int, int]]:
    keys = Keys(settings.key_prefix)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        exists = int(await client.exists(keys.state(cid), keys.seen(cid), keys.history(cid)))
        sizes = {int(k): int(v) for k, v in (await client.hgetall(keys.segment_sizes())).items()}
    finally:
        await client.aclose()
    return exists, sizes


async def assert_erased_then_restarts_from_nothing(served: Served, cid: str, audit: dict[str, Any],
                                                   sizes_before: dict[int, int]) -> None:
    """The checks both erasure entry points must pass."""
    s = served.settings
    seg = latest_updates(served)[cid]["segment_id"]
    assert audit["customer_id"] == cid and audit["had_membership"] and audit["segment_id"] == seg
    keys = Keys(s.key_prefix)
    assert sorted(audit["removed_keys"]) == sorted([keys.state(cid), keys.seen(cid),
                                                    keys.history(cid)])
    assert audit["tombstoned_topics"] == [s.topic_segment_updates]
    exists, sizes = await redis_view(s, cid)
    assert exists == 0 and sizes[seg] == sizes_before[seg] - 1
    status, _, _ = await call(served, "GET", f"/v1/customers/{cid}")
    assert status == 404

    audits = await consume(s, s.topic_audit, until=1, timeout=30, settle=0.5)
    assert audit in [a["value"] for a in audits if a["key"] == cid.encode()]
    updates = await consume(s, s.topic_segment_updates, until=len(served.updates) + 1, timeout=30,
                            settle=0.5)
    mine = [u for u in updates if u["key"] == cid.encode()]
    assert mine[-1]["value"] is None, "the latest record for the customer must be a tombstone"

    await produce(s, events_of(served, cid))  # the very same event ids again

    async def back() -> bool:
        status, body, _ = await call(served, "GET", f"/v1/customers/{cid}")
        return status == 200 and body["segment_id"] is not None
    await wait_until(back, 30, "the erased customer to be segmented again")
    _, body, _ = await call(served, "GET", f"/v1/customers/{cid}")
    assert body["features"]["events_total"] == len(events_of(served, cid))  # counted once, afresh
    later = await consume(s, s.topic_segment_updates, until=len(updates) + 1, timeout=30)
    after = [u["value"] for u in later if u["key"] == cid.encode()][len(mine):]
    assert after and after[0]["previous_segment_id"] is None  # a first assignment again


async def erase_over_http_and_check(served: Served, cid: str) -> None:
    """DELETE as the ``svc`` token, then every check an erasure must pass."""
    _, sizes_before = await redis_view(served.settings, cid)
    status, audit, _ = await call(served, "DELETE", f"/v1/customers/{cid}", token=SVC)
    assert status == 200, audit
    assert_matches_openapi("/v1/customers/{customer_id}", "delete", status, audit)
    assert (audit["actor"], audit["via"]) == ("svc", "http")
    await assert_erased_then_restarts_from_nothing(served, cid, audit, sizes_before)


async def test_delete__erases_the_customer_with_tombstone_and_audit_and_later_events_start_afresh(
    served: Served,
) -> None:
    await erase_over_http_and_check(served, "c0010")

    status, again, _ = await call(served, "DELETE", "/v1/customers/never-seen", token=SVC)
    assert status == 200 and (again["had_membership"], again["removed_keys"]) == (False, [])


async def test_cli_forget__erases_like_the_api_and_audits_the_given_actor(served: Served) -> None:
    cid = "c0011"
    _, sizes_before = await redis_view(served.settings, cid)
    env = {**settings_env(served.settings), **{k: v for k, v in os.environ.items()
                                                 if k == "PYTHONPATH"}}
    out = subprocess.run([sys.executable, "-m", "streamseg", "forget", cid, "--actor", "alice"],
                         env=env, capture_output=True, text=True, timeout=60, cwd=Path.cwd())
    assert out.returncode == 0, out.stderr[-2000:]
    audit = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert (audit["actor"], audit["via"]) == ("alice", "cli")
    await assert_erased_then_restarts_from_nothing(served, cid, audit, sizes_before)


async def test_metrics__open_by_default_and_count_api_requests_by_route(served: Served) -> None:
    await call(served, "GET", "/v1/customers/c0000")
    status, text, _ = await call(served, "GET", "/metrics", token=None)
    assert status == 200
    assert 'streamseg_api_requests_total{method="GET",route="/v1/customers/{customer_id}",status="200"}' in text
    assert "c0000" not in text
    # a probe asks for what it reads (prometheus_client's own filter), and gets only that
    _, only, _ = await call(served, "GET", "/metrics?name[]=streamseg_api_requests_total"
                            "&name[]=streamseg_processing_latency_seconds_bucket", token=None)
    names = {line.split("{")[0].split(" ")[0] for line in only.splitlines() if not line.startswith("#")}
    assert names == {"streamseg_api_requests_total", "streamseg_processing_latency_seconds_bucket"}
    assert "streamseg_processing_latency_seconds_bucket" in text and "streamseg_events_total" in text


async def test_offer_service_example__offers_by_segment_and_forgets_erased_customers(
    served: Served,
) -> None:
    from examples.offer_service.offers import choose_offer

    s = served.settings
    root = Path(__file__).parents[2]
    env = {**settings_env(s), "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.offer_service", "--group", f"offers-{s.key_prefix}",
        env=env, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    decisions: dict[str, dict[str, Any]] = {}

    async def read_until(done: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
            assert line, "the service exited: " + (await proc.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
            d = orjson.loads(line)
            decisions[d["customer_id"]] = d

    try:
        everyone = {f"c{c:04d}" for c in range(CUSTOMERS)}
        for attempt in range(3):  # the leader may republish the catalog meanwhile: look again
            latest = {u["key"].decode(): u["value"] for u in await consume(
                s, s.topic_segment_updates, until=len(served.updates), timeout=30, settle=0.5)}
            entries = {int(r["key"]): CatalogEntry.model_validate(r["value"]) for r in await consume(
                s, s.topic_segments, until=1, timeout=30, settle=0.5) if r["value"] is not None}

            def expected(cid: str) -> str:
                entry = entries.get(latest[cid]["segment_id"])  # noqa: B023
                return choose_offer(entry.name, entry.profile) if entry else \
                    choose_offer(latest[cid]["segment_name"], None)  # noqa: B023

            def settled() -> bool:
                return all(cid in decisions and decisions[cid].get("offer") == expected(cid)
                           for cid in everyone if latest.get(cid) is not None)  # noqa: B023

            try:
                await read_until(settled, timeout=20)
                break
            except TimeoutError:
                assert attempt < 2, {c: (decisions.get(c), expected(c)) for c in sorted(everyone)}
        assert entries, "the worker publishes its catalog"
        status, _, _ = await call(served, "DELETE", "/v1/customers/c0020")
        assert status == 200
        await read_until(lambda: decisions["c0020"].get("forgotten") is True, timeout=30)
        assert decisions["c0020"]["offer"] is None
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0  # a clean stop on SIGTERM


# -- the same API in a process of its own (``streamseg api``) -------------------------------


@pytest.fixture(scope="module")
async def standalone(served: Served, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """``streamseg api`` next to the module's worker; ``call(standalone, ...)`` goes to it."""
    port = free_port()
    proc = WorkerProcess(served.settings.model_copy(update={"api_port": port}),
                         tmp_path_factory.mktemp("standalone"), name="api", command="api",
                         port=port).start()
    try:
        via = dataclasses.replace(served, worker=proc,
                                  settings=served.settings.model_copy(update={"web_port": port}))

        async def ready() -> bool:
            status, _, _ = await call(via, "GET", "/readyz", token=None)
            return status == 200
        await wait_until(ready, 30, "the standalone api to be ready")
        yield via
    finally:
        proc.stop()


async def same_answer(a: Served, b: Served, path: str, timeout: float = 15.0) -> tuple[int, Any]:
    """Both servers' answer to GET path once they agree (the leader may republish meanwhile)."""
    answers: list[tuple[int, Any]] = []

    async def agree() -> bool:
        answers[:] = [(await call(srv, "GET", path))[:2] for srv in (a, b)]
        return answers[0] == answers[1]

    await wait_until(agree, timeout, lambda: f"both servers to agree on {path}: {answers}", interval=0.3)
    return answers[1]


async def test_standalone_api__answers_every_lookup_as_the_worker_does(
    served: Served, standalone: Served,
) -> None:
    for cid in ["c0000", "c0001", "c0002", "c0030"]:
        status, body = await same_answer(served, standalone, f"/v1/customers/{cid}")
        # equal bodies include features_as_of: the worker's event clock reached the other process
        assert status == 200 and body["segment_id"] is not None, body
        assert_matches_openapi("/v1/customers/{customer_id}", "get", status, body)
    status, body = await same_answer(served, standalone, "/v1/segments")
    assert status == 200 and body["model_version"] >= 1 and body["segments"]
    assert_matches_openapi("/v1/segments", "get", status, body)
    sid = body["segments"][0]["segment_id"]
    status, body = await same_answer(served, standalone, f"/v1/segments/{sid}")
    assert status == 200 and body["segment_id"] == sid
    for path, code in [("/v1/customers/nobody-here", 404), ("/v1/customers/" + "x" * 200, 400),
                       ("/v1/segments/7777", 404), ("/v1/segments/abc", 400)]:
        status, body = await same_answer(served, standalone, path)
        assert status == code and body["error"]["code"], (path, body)


async def test_standalone_api__checks_tokens_and_serves_probes_and_metrics(standalone: Served) -> None:
    status, body, headers = await call(standalone, "GET", "/v1/customers/c0000", token=None)
    assert (status, body["error"]["code"]) == (401, "missing_token")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await call(standalone, "DELETE", "/v1/customers/c0000", token="wrong-token-0123456789")
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    status, body, _ = await call(standalone, "GET", "/readyz", token=None)
    assert status == 200 and body["checks"] == {"broker": True, "redis": True, "model": True}
    assert body["model_version"] >= 1
    assert_matches_openapi("/readyz", "get", status, body)
    for path in ["/healthz", "/v1/openapi.json"]:
        status, _, _ = await call(standalone, "GET", path, token=None)
        assert status == 200, path
    await call(standalone, "GET", "/v1/customers/c0001")
    status, text, _ = await call(standalone, "GET", "/metrics", token=None)
    assert status == 200
    assert 'streamseg_api_requests_total{method="GET",route="/v1/customers/{customer_id}",status="200"}' in text
    assert "c0001" not in text


async def test_standalone_api__serves_the_explorer_openly_and_the_kept_drift_reports_to_tokens(
        served: Served, standalone: Served) -> None:
    status, page, _ = await call(standalone, "GET", "/ui/", token=None)
    assert status == 200 and '<script src="app.js">' in page
    status, body, _ = await call(standalone, "GET", "/v1/drift", token=None)
    assert (status, body["error"]["code"]) == (401, "missing_token")
    status, body = await same_answer(served, standalone, "/v1/drift")
    assert status == 200 and [w["window"] for w in body["windows"]] == ["1m", "15m"]
    assert_matches_openapi("/v1/drift", "get", status, body)


async def test_standalone_api__erases_like_the_worker_api(standalone: Served) -> None:
    await erase_over_http_and_check(standalone, "c0012")
