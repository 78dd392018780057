"""Validate a real response against the OpenAPI document the worker ships."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

import streamseg

SHIPPED = Path(streamseg.__file__).parent / "api" / "openapi.json"


@cache
def document() -> dict[str, Any]:
    return json.loads(SHIPPED.read_text())


def assert_matches_openapi(path: str, method: str, status: int, body: Any) -> None:
    """``body`` is what the document promises for ``method path`` answering ``status``."""
    operation = document()["paths"][path][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, not documented"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document()["components"]})
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
