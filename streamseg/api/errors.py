"""Every API error is JSON: ``{"error": {"code": ..., "message": ...}}``.

``code`` is a short stable label clients can branch on; ``message`` says what
went wrong and what to do about it.

>>> ApiError(404, "customer_not_found", "no data for customer 'c1'").body()
{'error': {'code': 'customer_not_found', 'message': "no data for customer 'c1'"}}
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

from streamseg.errors import StreamsegError

JSON = "application/json"


class ApiError(StreamsegError):
    """Raised by views and the middleware; rendered by :func:`error_response`."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def error_response(err: ApiError) -> web.Response:
    return web.Response(body=orjson.dumps(err.body()), status=err.status, content_type=JSON,
                        headers=err.headers)


def from_http_exception(exc: web.HTTPException) -> ApiError:
    """aiohttp's own refusals (unknown path, wrong method) in the API's error shape."""
    if exc.status == 404:
        return ApiError(404, "not_found", "no such endpoint; see GET /v1/openapi.json")
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return ApiError(405, "method_not_allowed", f"method not allowed here; allowed: {allowed}",
                        {"Allow": allowed})
    return ApiError(exc.status, "http_error", exc.reason)
