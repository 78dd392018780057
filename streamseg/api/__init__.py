"""The HTTP API served by every worker (Faust's web server).

``register(app, engine, store, settings)`` mounts:

- ``GET /v1/customers/{id}``, ``DELETE /v1/customers/{id}`` (erasure)
- ``GET /v1/segments``, ``GET /v1/segments/{id}``, ``GET /v1/drift``
- ``GET /ui/``: the segment explorer's static files (``streamseg.api.ui``)
- ``GET /v1/openapi.json`` (the contract, ``streamseg/api/openapi.json``)
- ``GET /healthz``, ``GET /readyz``, ``GET /metrics``

behind one middleware (bearer-token auth, JSON errors, request metrics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import faust
from aiohttp import web

from streamseg.api.auth import TokenAuth
from streamseg.api.health import BrokerProbe
from streamseg.api.middleware import api_middleware
from streamseg.api.ui import UiFiles
from streamseg.api.views import Api, EngineModelView
from streamseg.drift.windows import window_name
from streamseg.erasure import Eraser, check_broker
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.kafka_security import client_options
from streamseg.metrics import ApiMetrics
from streamseg.settings import Settings

if TYPE_CHECKING:
    from streamseg.engine import Engine

__all__ = ["Api", "register"]


def register(app: faust.App, engine: Engine, store: RedisFeatureStore, settings: Settings) -> Api:
    """Mount the API on ``app``; erasure takes the engine's lock, so it never splits a batch."""
    registry = engine.metrics.registry
    metrics = ApiMetrics(registry)
    reader = RedisFeatureStore.from_url(  # the web thread's own client (one client, one loop)
        settings.redis_url, Keys(settings.key_prefix),
        dedup_horizon_days=settings.dedup_horizon_days, retention_days=settings.retention_days)
    eraser = Eraser(settings, store, engine.publisher, lock=engine.lock, on_forget=engine.forget,
                    preflight=lambda: check_broker(settings))
    api = Api(EngineModelView(engine), eraser, reader,
              BrokerProbe(settings.kafka_bootstrap_list, security=client_options(settings)),
              registry, metrics, drift_windows=[window_name(s) for s in settings.drift_window_seconds])

    _page(app, "/v1/customers/{customer_id:.+}", "customer",
          get=api.get_customer, delete=api.delete_customer)
    _page(app, "/v1/segments", "segments", get=api.get_segments)
    _page(app, "/v1/segments/{segment_id}", "segment", get=api.get_segment)
    _page(app, "/v1/drift", "drift", get=api.get_drift)
    _page(app, "/v1/openapi.json", "openapi", get=api.openapi)
    ui = UiFiles()
    _page(app, "/ui", "ui_root", get=ui.get)
    _page(app, "/ui/", "ui_index", get=ui.get)
    _page(app, "/ui/{name}", "ui_file", get=ui.get)
    _page(app, "/healthz", "healthz", get=api.healthz)
    _page(app, "/readyz", "readyz", get=api.readyz)
    _page(app, "/metrics", "metrics", get=api.metrics_page)

    aio = cast(Any, app.web).web_app  # Faust's aiohttp driver: its Application
    aio.middlewares.append(api_middleware(
        TokenAuth(settings.api_token_map, metrics_open=not settings.metrics_auth), metrics))
    aio.on_cleanup.append(lambda _app: _close(api))

    @app.task
    async def bind_engine_loop() -> None:
        api.engine_loop = asyncio.get_running_loop()

    return api


def _page(app: faust.App, path: str, name: str,
          **handlers: Callable[..., Awaitable[web.Response]]) -> None:
    """A Faust page whose methods call the given aiohttp handlers."""
    methods = {method: _method(h) for method, h in handlers.items()}
    app.page(path, name=name)(type(f"{name}_view", (faust.web.View,), methods))


def _method(handler: Callable[..., Awaitable[web.Response]]) -> Callable[..., Awaitable[web.Response]]:
    async def method(view: faust.web.View, request: web.Request, **params: str) -> web.Response:
        return await handler(request, **params)

    return method


async def _close(api: Api) -> None:
    await api.close()
