"""The HTTP API's handlers: customer lookup and erasure, segment catalog, health, metrics.

Handlers are plain aiohttp coroutines; :func:`streamseg.api.register` mounts
them as Faust pages. They may run on the web server's own thread and event
loop (``STREAMSEG_WEB_IN_THREAD``), so they read Redis through their own
client, and anything that must be ordered with the batch loop (erasure) is
handed to the engine's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from streamseg.api.drift import drift_body
from streamseg.api.errors import JSON, ApiError
from streamseg.api.health import BrokerProbe
from streamseg.api.lookup import (
    CatalogNames,
    CoalescedReads,
    catalog_names,
    customer_body,
    segment_body,
    segments_body,
)
from streamseg.api.middleware import ACTOR
from streamseg.erasure import (
    BrokerUnavailable,
    Eraser,
    ErasureIncomplete,
    InvalidCustomerId,
    check_customer_id,
)
from streamseg.errors import StoreRefused, StoreUnavailable
from streamseg.features.store import RedisFeatureStore
from streamseg.kafka_security import KafkaAccessDenied
from streamseg.metrics import ApiMetrics, exposition
from streamseg.value.scorer import ValueScorer

if TYPE_CHECKING:
    from streamseg.engine import Engine

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelView(Protocol):
    """What the handlers need to know beyond Redis: the model in use and the engine's clock.

    Inside a worker it is the engine (:class:`EngineModelView`); in the
    stand-alone API process, what the workers last wrote to Redis
    (:class:`streamseg.api.server.StoredModelView`).
    """

    def model_version(self) -> int: ...  # 0 before any model

    def names(self) -> Mapping[int, str]: ...

    def now_ms(self) -> float: ...

    def loaded(self) -> bool: ...

    def warming_up(self) -> str | None: ...  # "warming up: N of M customers seen", or None

    def value(self) -> ValueScorer: ...  # the customer-value model (no parameters: null values)


class EngineModelView:
    """The engine's own model and clock (attribute reads: safe from the web thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def model_version(self) -> int:
        model = self.engine.assigner.model  # replaced whole when a new version arrives, never mutated
        return model.version if model is not None else 0

    def names(self) -> Mapping[int, str]:
        model = self.engine.assigner.model
        return model.names if model is not None else {}

    def now_ms(self) -> float:
        return self.engine.clock.now_ms()

    def loaded(self) -> bool:
        return self.engine.assigner.model is not None

    def warming_up(self) -> str | None:
        return None if self.engine.assigner.model is not None else self.engine.warmup.text()

    def value(self) -> ValueScorer:
        return self.engine.leader.value


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON)


class Api:
    """State shared by the handlers; one per worker."""

    def __init__(self, model: ModelView, eraser: Eraser, reader: RedisFeatureStore,
                 probe: BrokerProbe, registry: CollectorRegistry, metrics: ApiMetrics,
                 drift_windows: Sequence[str] = ()) -> None:
        self.model = model
        self.drift_windows = list(drift_windows)  # window labels, as the drift reports name them
        self.eraser = eraser
        self.reader = reader
        self.probe = probe
        self.registry = registry
        self.metrics = metrics
        self.names = CatalogNames(self._catalog_names, model.names)
        # one read at a time, many lookups each (reader.hashes: hiredis on one connection)
        self.states = CoalescedReads(reader.lookups)  # a customer's state and history
        self.engine_loop: asyncio.AbstractEventLoop | None = None
        self._openapi = resources.files("streamseg.api").joinpath("openapi.json").read_bytes()

    # -- customers ---------------------------------------------------------------
    async def get_customer(self, request: web.Request, customer_id: str) -> web.Response:
        _check_customer_id(customer_id)
        state, history = await self._redis(self.states.get(customer_id))
        if not state:
            raise ApiError(404, "customer_not_found", f"no data for customer {customer_id!r} "
                           "(never seen, expired or erased)")
        names = await self._redis(self.names.get())
        return json_response(customer_body(customer_id, state, names=names,
                                           now_ms=self.model.now_ms(),
                                           warming_up=self.model.warming_up(),
                                           value=self.model.value(), history=history))

    async def delete_customer(self, request: web.Request, customer_id: str) -> web.Response:
        _check_customer_id(customer_id)
        actor = request[ACTOR]  # set by the middleware: this path is never open
        try:
            audit = await self.on_engine_loop(
                lambda: self.eraser.forget(customer_id, actor=actor, via="http"))
        except (StoreUnavailable, StoreRefused) as exc:
            raise ApiError(503, "store_unavailable", f"{exc}; nothing was erased, retry") from exc
        except (BrokerUnavailable, KafkaAccessDenied) as exc:  # asked before anything was erased
            raise ApiError(503, "broker_unavailable", f"{exc}; nothing was erased") from exc
        except ErasureIncomplete as exc:
            raise ApiError(503, "erasure_incomplete", str(exc)) from exc
        self.metrics.erasures.inc()
        return json_response(audit.model_dump())

    # -- segments ------------------------------------------------------------------
    async def get_segments(self, request: web.Request) -> web.Response:
        catalog, sizes = await self._redis(self.reader.segments())
        return json_response(segments_body(catalog, sizes, self.model.model_version()))

    async def get_segment(self, request: web.Request, segment_id: str) -> web.Response:
        try:
            sid = int(segment_id)
        except ValueError:
            raise ApiError(400, "invalid_segment_id",
                           f"segment ids are integers, got {segment_id[:40]!r}") from None
        catalog, sizes = await self._redis(self.reader.segments())
        if sid not in catalog:
            raise ApiError(404, "segment_not_found", f"segment {sid} is not in the catalog; "
                           "see GET /v1/segments")
        return json_response(segment_body(catalog[sid], sizes.get(sid, 0)))

    async def get_drift(self, request: web.Request) -> web.Response:
        kept = await self._redis(self.reader.drift_reports(self.drift_windows))
        return json_response(drift_body(kept))

    # -- operations ------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        redis_ok, broker_ok = await asyncio.gather(self.reader.ping(), self.probe.reachable())
        model_ok = self.model.loaded()
        ready = redis_ok and broker_ok and model_ok
        body = {"ready": ready, "checks": {"broker": broker_ok, "redis": redis_ok, "model": model_ok},
                "model_version": self.model.model_version(),
                "warming_up": None if model_ok else self.model.warming_up()}
        return json_response(body, 200 if ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        # aiohttp refuses a charset inside content_type=, so set the header itself
        return web.Response(body=exposition(self.registry, request.query.getall("name[]", [])),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type=JSON)

    async def close(self) -> None:
        await self.names.close()
        await self.reader.close()
        await self.probe.close()

    # -- helpers -------------------------------------------------------------------
    async def on_engine_loop(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on the engine's event loop (where the batch lock lives)."""
        loop = self.engine_loop
        if loop is None:
            raise ApiError(503, "starting", "the worker is still starting; retry in a moment")
        if loop is asyncio.get_running_loop():
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))

    async def _catalog_names(self) -> dict[int, str]:
        return catalog_names(await self.reader.catalog())

    @staticmethod
    async def _redis(op: Awaitable[T]) -> T:
        try:
            return await op
        except (StoreUnavailable, StoreRefused) as exc:  # refused: the API's Redis settings
            raise ApiError(503, "store_unavailable", f"{exc}; retry") from exc


def _check_customer_id(customer_id: str) -> None:
    try:
        check_customer_id(customer_id)
    except InvalidCustomerId as exc:
        raise ApiError(400, "invalid_customer_id", str(exc)) from None
