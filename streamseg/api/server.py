"""``streamseg api``: the HTTP API in a process of its own, next to the workers.

Inside a worker the API shares the process, and so the GIL, with stream
processing: while a batch computes, every request waits for the interpreter at
each socket read and write (see README, Lookup latency). This process serves
the same routes, with the same auth, errors and metrics, from what the workers
keep in Redis, so lookups scale apart from ingestion and never wait behind a
batch:

- customers and the catalog come from Redis, as in a worker;
- the model version and the engine's clock (event time on a replay) come from
  the status each worker writes every second (``Keys.workers``), so
  ``features_as_of`` matches what a worker would answer;
- erasure runs here as ``streamseg forget`` does (own producer): the membership
  write of a worker that races it keeps the customer erased
  (``MEMBERSHIP_LUA``) and publishes the tombstone again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from streamseg.api.auth import TokenAuth
from streamseg.api.health import BrokerProbe
from streamseg.api.middleware import api_middleware
from streamseg.api.sched import current_slice_ms, request_slice
from streamseg.api.ui import UiFiles
from streamseg.api.views import Api
from streamseg.drift.windows import window_name
from streamseg.erasure import Eraser, check_broker, tombstone_topics
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.kafka_security import check_settings_access, client_options, principal
from streamseg.metrics import ApiMetrics
from streamseg.publish.kafka import KafkaPublisher
from streamseg.segmenting.warmup import warming_up
from streamseg.settings import Settings
from streamseg.value.scorer import ValueScorer

if TYPE_CHECKING:
    from streamseg.engine import OutRecord

log = logging.getLogger(__name__)
#: How often the worker statuses are re-read (workers write theirs every second).
REFRESH_S = 1.0
#: A worker status older than this does not count as a live worker with a model.
STALE_AFTER_S = 30.0


class LazyPublisher:
    """A :class:`KafkaPublisher` started at its first publish and stopped on exit."""

    def __init__(self, bootstrap: list[str], security: Mapping[str, Any] | None = None, *,
                 who: str | None = None, idempotent: bool = True) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.who = who
        self.idempotent = idempotent
        self._started: KafkaPublisher | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> LazyPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._started is not None:
            await self._started.__aexit__(*exc)
            self._started = None

    async def publish(self, records: Sequence[OutRecord]) -> None:
        async with self._lock:
            if self._started is None:
                publisher = KafkaPublisher(self.bootstrap, self.security, who=self.who,
                                           idempotent=self.idempotent)
                await publisher.__aenter__()  # raises while the broker is away: the next try retries
                self._started = publisher
        await self._started.publish(records)


class StoredModelView:
    """Model version and clock from the workers' statuses in Redis (``refresh()`` re-reads)."""

    def __init__(self, reader: RedisFeatureStore, settings: Settings,
                 wall_ms: Callable[[], float] = lambda: time.time() * 1000.0) -> None:
        self.reader = reader
        self.settings = settings
        self.wall_ms = wall_ms
        self._version = 0
        self._clock_ms = 0.0
        self._live = False
        self._warming: str | None = None
        self._value = ValueScorer.from_settings(settings)

    async def refresh(self) -> None:
        self._value.adopt_json(await self.reader.value_params())
        by_worker = await self.reader.worker_statuses()
        statuses = by_worker.values()
        now = self.wall_ms()
        self._warming = warming_up(by_worker)
        self._version = max((int(s.get("model_version", 0)) for s in statuses), default=0)
        self._clock_ms = max((float(s.get("clock_ms", 0.0)) for s in statuses), default=0.0)
        self._live = any(int(s.get("model_version", 0)) >= 1
                         and now - float(s.get("at_ms", 0.0)) <= STALE_AFTER_S * 1000
                         for s in statuses)

    def model_version(self) -> int:
        return self._version

    def names(self) -> Mapping[int, str]:
        return {}  # the catalog names every segment a worker published

    def now_ms(self) -> float:
        """As ``EngineClock.now_ms``: the newest event time any worker applied, or the wall clock."""
        if self.settings.clock == "wall" or self._clock_ms == 0.0:
            return self.wall_ms()
        return self._clock_ms

    def loaded(self) -> bool:
        """A worker with a model reported within ``STALE_AFTER_S``."""
        return self._live

    def warming_up(self) -> str | None:
        """The workers' progress towards the first model (None once one has a model)."""
        return self._warming

    def value(self) -> ValueScorer:
        """The customer-value model as the leader last wrote its parameters to Redis."""
        return self._value


def build(settings: Settings, registry: CollectorRegistry | None = None) -> web.Application:
    """The API as an aiohttp application (routes as in a worker; see ``streamseg.api``)."""
    registry = registry or CollectorRegistry()
    metrics = ApiMetrics(registry)
    reader = RedisFeatureStore.from_url(
        settings.redis_url, Keys(settings.key_prefix),
        dedup_horizon_days=settings.dedup_horizon_days, retention_days=settings.retention_days)
    security = client_options(settings)
    publisher = LazyPublisher(settings.kafka_bootstrap_list, security, who=principal(settings),
                              idempotent=settings.kafka_idempotence)
    view = StoredModelView(reader, settings)
    api = Api(view, Eraser(settings, reader, publisher, preflight=lambda: check_broker(settings)), reader,
              BrokerProbe(settings.kafka_bootstrap_list, security=security), registry, metrics,
              drift_windows=[window_name(s) for s in settings.drift_window_seconds])

    app = web.Application(middlewares=[api_middleware(
        TokenAuth(settings.api_token_map, metrics_open=not settings.metrics_auth), metrics)])

    def param(handler: Callable[[web.Request, str], Awaitable[web.StreamResponse]],
              name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        return lambda request: handler(request, request.match_info[name])

    customer = "/v1/customers/{customer_id:.+}"
    app.router.add_get(customer, param(api.get_customer, "customer_id"))
    app.router.add_delete(customer, param(api.delete_customer, "customer_id"))
    app.router.add_get("/v1/segments", api.get_segments)
    app.router.add_get("/v1/segments/{segment_id}", param(api.get_segment, "segment_id"))
    app.router.add_get("/v1/drift", api.get_drift)
    app.router.add_get("/v1/openapi.json", api.openapi)
    ui = UiFiles()
    app.router.add_get("/ui", ui.get)
    app.router.add_get("/ui/{name}", param(ui.get, "name"))
    app.router.add_get("/ui/", ui.get)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics_page)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        api.engine_loop = asyncio.get_running_loop()  # erasures run on this loop
        async with publisher:  # connects at the first erasure: lookups need no broker
            stop = asyncio.Event()
            follow = asyncio.create_task(_follow(view, stop))
            # what exists now lives as long as the process: keep it out of every full
            # collection (they would scan it all, in the middle of some request)
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                stop.set()  # ends the loop even if a Redis call swallows the cancel below
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow
                await api.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _follow(view: StoredModelView, stop: asyncio.Event) -> None:
    """Re-read the workers' statuses every ``REFRESH_S`` until ``stop`` is set.

    The loop ends on ``stop``, not only on cancellation: a cancel that lands inside a
    redis-py call is often lost, the call completing normally (redis-py 8.1 here: 394 of
    600 cancels of a running HGETALL), and the loop would go on while the shutdown
    awaiting it waited forever (it did, once in CI).
    """
    while not stop.is_set():
        try:
            await view.refresh()
        except Exception as exc:  # Redis away: keep the last statuses, /readyz says why
            log.debug("worker statuses unavailable: %r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_S)


def run(settings: Settings, host: str, port: int) -> int:
    """Serve until SIGINT/SIGTERM."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with faust-streaming's extras
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    if settings.api_slice_ms:  # before any thread starts: threads inherit it
        if request_slice(settings.api_slice_ms):
            log.info("scheduler time slice %.1f ms (kernel reports %s ms)", settings.api_slice_ms,
                     current_slice_ms())
        else:
            log.info("scheduler time slices stay the system's (not supported here)")
    loop = loop_factory() if loop_factory else asyncio.new_event_loop()
    if settings.kafka_security_protocol != "PLAINTEXT":
        # a secured cluster that refuses our credentials or ACLs ends the API now
        # (KafkaAccessDenied); one that is away does not: lookups need no broker, /readyz says so
        loop.run_until_complete(check_settings_access(
            settings, topics=[*tombstone_topics(settings), settings.topic_audit]))
    log.info("streamseg api on http://%s:%d (Redis %s)", host, port, settings.redis_url)
    web.run_app(build(settings), host=host, port=port, print=None, access_log=None,
                shutdown_timeout=5.0, loop=loop)
    return 0
