"""One aiohttp middleware in front of every route: auth, JSON errors, metrics.

It sits in front of Faust's own pages too, so nothing the worker serves is
open by accident, and even aiohttp's 404/405 answers come out as JSON errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from streamseg.api.auth import TokenAuth
from streamseg.api.errors import ApiError, error_response, from_http_exception
from streamseg.metrics import ApiMetrics

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The authenticated token's name, for handlers that record who asked (erasure).
ACTOR = web.RequestKey("actor", str)


def api_middleware(auth: TokenAuth, metrics: ApiMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            if not auth.is_open(request.path):
                request[ACTOR] = auth.actor(request.headers.get("Authorization"))
            response = await handler(request)
        except ApiError as err:
            response = error_response(err)
        except web.HTTPException as exc:  # the router's own 404 / 405
            response = error_response(from_http_exception(exc))
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            response = error_response(ApiError(500, "internal", "unexpected server error; see the "
                                                                "worker log"))
        metrics.observe(_route(request), request.method, response.status, time.perf_counter() - started)
        return response

    return middleware


def _route(request: web.Request) -> str:
    """The matched route's pattern, so a metric label never holds a customer id."""
    info = request.match_info
    resource = info.route.resource if info is not None else None
    return resource.canonical if resource is not None else "unmatched"
