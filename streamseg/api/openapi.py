"""The API's OpenAPI 3.1 document, generated from the response models.

The shipped ``openapi.json`` (package data, served at ``GET /v1/openapi.json``)
is this module's output; a unit test keeps the two equal, and integration
tests validate real responses against it. After changing a model, regenerate:

    python -m streamseg.api.openapi --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from streamseg import __version__
from streamseg.drift.report import DriftReport
from streamseg.features.registry import FEATURES
from streamseg.publish.records import CatalogEntry, CustomerValueRecord, ErasureAudit, Reason

PATH = Path(__file__).with_name("openapi.json")


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorDetail(_Body):
    code: str = Field(description="stable machine label, e.g. customer_not_found")
    message: str = Field(description="what went wrong and what to do")


class Error(_Body):
    """Every 4xx/5xx answer."""

    error: ErrorDetail


Features = create_model(  # type: ignore[call-overload]
    "Features", __config__=ConfigDict(extra="forbid"),
    __doc__="Every registered feature, derived from the customer's state at features_as_of.",
    **{f.name: (float, Field(description=f"{f.description} ({f.unit}, {f.window})"))
       for f in FEATURES},
)


class HistoryEntry(_Body):
    """One change of the customer's segment (a first assignment or a move)."""

    ts_ms: int = Field(description="event time (epoch ms) of the evaluation that moved the customer")
    from_segment: int | None = Field(description="the segment left; null on a first assignment")
    to_segment: int = Field(description="the segment joined")
    model_version: int = Field(description="model version of the assignment")
    cause: str | None = Field(description="the feature that pulled the customer most (the "
                              "first of the segment update's reasons); null if none")
    from_segment_name: str | None = Field(description="from the segment catalog (now)")
    to_segment_name: str = Field(description="from the segment catalog (now)")


class Customer(_Body):
    """A customer's current segment, why, features and latest segment changes."""

    customer_id: str
    segment_id: int | None = Field(description="null until the model has assigned the customer")
    segment_name: str | None = Field(description="from the segment catalog")
    distance: float | None = Field(description="to the segment centre, in standardized units")
    model_version: int | None = Field(description="model version of the assignment")
    reasons: list[Reason] = Field(description="features that moved the customer into the segment")
    features: Features  # type: ignore[valid-type]
    features_as_of: str = Field(description="the worker's clock the features are computed at")
    last_event_ts: str | None = Field(description="time of the customer's newest event")
    warming_up: str | None = Field(description='while no model exists yet and the customer has '
                                   'no segment: "warming up: N of M customers seen" (N distinct '
                                   "customers seen, M needed for the first model); else null")
    value: CustomerValueRecord | None = Field(
        None, description="churn risk, expected purchases and lifetime value at features_as_of; "
        "null until the leader has fitted the value model")
    history: list[HistoryEntry] = Field(
        default_factory=list, description="the latest segment changes, newest first (at most "
        "STREAMSEG_CUSTOMER_HISTORY; kept while the customer's state is; [] when off)")


class Segment(CatalogEntry):
    """A catalog entry with the segment's live size."""

    size: int = Field(description="customers in the segment now (profile.size is as profiled)")


class SegmentList(_Body):
    model_version: int = Field(description="model version this worker assigns with")
    segments: list[Segment]


class Health(_Body):
    status: Literal["ok"]


class Checks(_Body):
    broker: bool
    redis: bool
    model: bool


class Readiness(_Body):
    ready: bool
    checks: Checks
    model_version: int
    warming_up: str | None = Field(description='before the first model: "warming up: N of M '
                                   'customers seen" (N distinct customers seen, M needed); '
                                   "else null")


class SegmentShareSeries(_Body):
    segment_id: int
    name: str
    active_share: list[float | None] = Field(description="the segment's share of the window's "
                                             "active customers at each of window_ends (all "
                                             "workers' reports summed); null: none active")


class ShareSeries(_Body):
    window_ends: list[str] = Field(description="the kept reports' window ends, oldest first")
    segments: list[SegmentShareSeries]


class DriftWindow(_Body):
    window: str = Field(description="window length label, as in STREAMSEG_DRIFT_WINDOWS")
    kept: int = Field(description="reports kept for this window (the newest 24, all workers')")
    latest: list[DriftReport] = Field(description="each worker's newest report, newest first "
                                      "(each worker reports on its own partitions)")
    shares: ShareSeries = Field(description="each segment's share over the kept windows")


class DriftList(_Body):
    """The latest drift reports per window, as the workers keep them in Redis."""

    windows: list[DriftWindow]


MODELS: list[type[BaseModel]] = [Error, Customer, Segment, SegmentList, Health, Readiness,
                                 ErasureAudit, DriftList]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "invalid input", 401: "missing or invalid bearer token", 404: "not found",
            503: "Redis or Kafka unreachable (retry)"}
    return {str(c): _json("Error", text[c]) for c in codes}


_CUSTOMER_ID = {"name": "customer_id", "in": "path", "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _paths() -> dict[str, Any]:
    return {
        "/v1/customers/{customer_id}": {
            "parameters": [_CUSTOMER_ID],
            "get": {"operationId": "getCustomer", "summary": "A customer's segment, reasons and features",
                    "security": _SECURED,
                    "responses": {"200": _json("Customer", "the customer"), **_errors(400, 401, 404, 503)}},
            "delete": {"operationId": "eraseCustomer",
                       "summary": "Erase a customer's data (GDPR); idempotent",
                       "description": "Deletes features, membership and dedup entries, publishes "
                       "tombstones on the compacted customer-keyed topics and an audit record. "
                       "Answers 200 with the audit record even if nothing was stored.",
                       "security": _SECURED,
                       "responses": {"200": _json("ErasureAudit", "the published audit record"),
                                     **_errors(400, 401, 503)}},
        },
        "/v1/segments": {
            "get": {"operationId": "listSegments", "summary": "The segment catalog with live sizes",
                    "security": _SECURED,
                    "responses": {"200": _json("SegmentList", "every catalog entry"), **_errors(401, 503)}},
        },
        "/v1/segments/{segment_id}": {
            "parameters": [{"name": "segment_id", "in": "path", "required": True,
                            "schema": {"type": "integer"}}],
            "get": {"operationId": "getSegment", "summary": "One catalog entry with its live size",
                    "security": _SECURED,
                    "responses": {"200": _json("Segment", "the segment"), **_errors(400, 401, 404, 503)}},
        },
        "/v1/drift": {
            "get": {"operationId": "listDrift",
                    "summary": "The latest drift reports per window, with each segment's recent shares",
                    "security": _SECURED,
                    "responses": {"200": _json("DriftList", "every configured window"),
                                  **_errors(401, 503)}},
        },
        "/v1/openapi.json": {
            "get": {"operationId": "openapi", "summary": "This document", "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1 document",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}}},
        },
        **_ui_paths(),
        "/healthz": {
            "get": {"operationId": "healthz", "summary": "Liveness: the process answers", "security": [],
                    "responses": {"200": _json("Health", "alive")}},
        },
        "/readyz": {
            "get": {"operationId": "readyz", "security": [],
                    "summary": "Readiness: broker and Redis reachable and the model warmed up",
                    "responses": {"200": _json("Readiness", "ready"),
                                  "503": _json("Readiness", "not ready; checks say which part")}},
        },
        "/metrics": {
            "get": {"operationId": "metrics", "summary": "Prometheus metrics",
                    "description": "Open unless STREAMSEG_METRICS_AUTH=true.",
                    "security": [{}, {"bearer": []}],
                    "responses": {"200": {"description": "Prometheus text format",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}},
                                  **_errors(401)}},
        },
    }


def _ui_paths() -> dict[str, Any]:
    """The segment explorer's static files (docs/explorer.md): open, they hold no data."""
    page = {"description": "the explorer's files (HTML, JavaScript, CSS)",
            "content": {"text/html": {"schema": {"type": "string"}}}}
    return {
        "/ui": {"get": {"operationId": "explorerRoot", "summary": "Redirects to /ui/", "security": [],
                        "responses": {"302": {"description": "to /ui/"}}}},
        "/ui/": {"get": {"operationId": "explorer", "summary": "The segment explorer (a web page)",
                         "security": [], "responses": {"200": page}}},
        "/ui/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["index.html", "app.js", "app.css"]}}],
            "get": {"operationId": "explorerFile", "summary": "One of the explorer's files",
                    "security": [], "responses": {"200": page, **_errors(404)}}},
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    _, schemas = models_json_schema([(m, "serialization") for m in MODELS],
                                    ref_template="#/components/schemas/{model}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamseg API", "version": __version__,
                 "description": "Customer lookup, segment catalog, drift, erasure and health, served by "
                 "every streamseg worker. Send 'Authorization: Bearer <token>' "
                 "(STREAMSEG_API_TOKENS) to /v1/*."},
        "security": _SECURED,
        "paths": _paths(),
        "components": {"schemas": schemas["$defs"],
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def render() -> str:
    return json.dumps(document(), indent=1, sort_keys=True) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help=f"write {PATH.name} instead of printing")
    args = ap.parse_args()
    if args.write:
        PATH.write_text(render())
    else:
        print(render(), end="")


if __name__ == "__main__":
    main()
