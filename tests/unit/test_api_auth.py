"""Bearer-token auth, the API's JSON errors, and the middleware that applies both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from streamseg.api.auth import TokenAuth
from streamseg.api.errors import ApiError
from streamseg.api.middleware import ACTOR, api_middleware
from streamseg.metrics import ApiMetrics
from streamseg.settings import Settings
from tests.openapi_check import assert_matches_openapi

SECRET = "s3cret-0123456789abcdef"


pytestmark = pytest.mark.usefixtures("clean_env")  # no STREAMSEG_* from the shell


def code_of(auth: TokenAuth, header: str | None) -> str:
    with pytest.raises(ApiError) as err:
        auth.actor(header)
    assert err.value.status == 401 and "Bearer" in err.value.headers["WWW-Authenticate"]
    return err.value.code


def test_right_token__names_the_actor_and_wrong_or_missing_ones_are_refused() -> None:
    auth = TokenAuth({SECRET: "ops", "another-secret-0123456": "svc"})
    assert auth.actor(f"Bearer {SECRET}") == "ops"
    assert auth.actor("bearer another-secret-0123456") == "svc"
    assert code_of(auth, None) == "missing_token"
    assert code_of(auth, "Basic b3BzOnB3") == "missing_token"
    assert code_of(auth, "Bearer ") == "missing_token"
    assert code_of(auth, "Bearer s3cret") == "invalid_token"  # a prefix is not the token
    assert code_of(auth, f"Bearer {SECRET}x") == "invalid_token"


def test_no_tokens_configured__refuses_everything_and_says_how_to_open_it() -> None:
    auth = TokenAuth({})
    with pytest.raises(ApiError, match="STREAMSEG_API_TOKENS") as err:
        auth.actor(f"Bearer {SECRET}")
    assert err.value.code == "auth_not_configured"


def test_open_paths__are_probes_and_the_contract_and_metrics_unless_told_otherwise() -> None:
    assert TokenAuth({}).open_paths == {"/healthz", "/readyz", "/v1/openapi.json", "/metrics"}
    assert "/metrics" not in TokenAuth({}, metrics_open=False).open_paths


def test_token_settings__parse_names_and_refuse_weak_or_unnamed_secrets_without_echoing_them() -> None:
    s = Settings(api_tokens=f"ops:{SECRET}, svc:another-secret-0123456")
    assert s.api_token_map == {SECRET: "ops", "another-secret-0123456": "svc"}
    for bad, why in [("ops:tiny-secret", "shorter than 16"), (SECRET, "name:secret"),
                     (f":{SECRET}", "name:secret")]:
        with pytest.raises(ValidationError, match=why) as err:
            Settings(api_tokens=bad)
        assert "tiny-secret" not in str(err.value) and SECRET not in str(err.value)


REGISTRY = CollectorRegistry()
METRICS = ApiMetrics(REGISTRY)


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"actor": request.get(ACTOR)})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    async def refuse(request: web.Request) -> web.Response:
        raise ApiError(404, "customer_not_found", "no data for customer 'x'")

    app = web.Application(middlewares=[api_middleware(TokenAuth({SECRET: "ops"}), METRICS)])
    app.router.add_get("/v1/customers/{customer_id:.+}", refuse)
    app.router.add_get("/v1/ok", ok)
    app.router.add_get("/v1/boom", boom)
    app.router.add_get("/healthz", ok)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_middleware__lets_the_right_token_through_and_passes_the_actor(client: TestClient) -> None:
    resp = await client.get("/v1/ok", headers={"Authorization": f"Bearer {SECRET}"})
    assert resp.status == 200 and await resp.json() == {"actor": "ops"}
    resp = await client.get("/healthz")  # open: no token needed
    assert resp.status == 200 and await resp.json() == {"actor": None}


async def test_middleware__every_refusal_is_a_documented_json_error(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {SECRET}"}
    cases = [("/v1/ok", {}, 401, "missing_token"),
             ("/v1/ok", {"Authorization": "Bearer nope"}, 401, "invalid_token"),
             ("/v1/customers/x", auth, 404, "customer_not_found"),
             ("/v1/nowhere", auth, 404, "not_found"),
             ("/v1/boom", auth, 500, "internal")]
    for path, headers, status, code in cases:
        resp = await client.get(path, headers=headers)
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (status, code), (path, body)
        assert resp.content_type == "application/json" and body["error"]["message"]
    resp = await client.get("/v1/customers/x", headers=auth)
    assert_matches_openapi("/v1/customers/{customer_id}", "GET", resp.status, await resp.json())


async def test_middleware__wrong_method_is_405_with_allow_header(client: TestClient) -> None:
    resp = await client.post("/v1/ok", headers={"Authorization": f"Bearer {SECRET}"})
    assert resp.status == 405 and "GET" in resp.headers["Allow"]
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_middleware__counts_requests_by_route_pattern_not_by_customer(client: TestClient) -> None:
    labels = {"route": "/v1/customers/{customer_id}", "method": "GET", "status": "404"}
    before = REGISTRY.get_sample_value("streamseg_api_requests_total", labels) or 0.0
    await client.get("/v1/customers/secret-person-42", headers={"Authorization": f"Bearer {SECRET}"})
    assert REGISTRY.get_sample_value("streamseg_api_requests_total", labels) == before + 1
    text = generate_latest(REGISTRY).decode()
    assert "secret-person-42" not in text and 'route="unmatched"' in text  # /v1/nowhere earlier
