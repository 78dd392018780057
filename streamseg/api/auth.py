"""Bearer-token access control for the HTTP API.

Tokens come from ``STREAMSEG_API_TOKENS`` as ``name:secret`` pairs; the name
is who made the request (the actor in erasure audit records). With no tokens
configured every protected request is refused: an API that holds personal
data is closed unless someone opens it. Open without a token: ``/healthz``,
``/readyz`` (probes rarely carry credentials; they reveal only up/down),
``/v1/openapi.json`` (the contract is not a secret), the explorer's static
files under ``/ui/`` (no data: the page asks ``/v1/*`` with a token) and ``/metrics`` unless
``STREAMSEG_METRICS_AUTH=true`` (Prometheus usually scrapes without one).

>>> auth = TokenAuth({"0123456789abcdef": "ops"})
>>> auth.actor("Bearer 0123456789abcdef")
'ops'
>>> auth.actor("Bearer wrong")
Traceback (most recent call last):
...
streamseg.api.errors.ApiError: 401 invalid_token: the bearer token is not valid
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from streamseg.api.errors import ApiError
from streamseg.api.ui import is_ui_path

ALWAYS_OPEN = frozenset({"/healthz", "/readyz", "/v1/openapi.json"})
_CHALLENGE = 'Bearer realm="streamseg"'


class TokenAuth:
    """Checks ``Authorization: Bearer <secret>`` against the configured tokens."""

    def __init__(self, tokens: Mapping[str, str], *, metrics_open: bool = True) -> None:
        self._tokens = [(secret.encode(), name) for secret, name in tokens.items()]
        self.open_paths = ALWAYS_OPEN | ({"/metrics"} if metrics_open else set())

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or is_ui_path(path)

    def actor(self, authorization: str | None) -> str:
        """The token's name, or :class:`ApiError` 401 saying why not."""
        if not self._tokens:
            raise ApiError(401, "auth_not_configured", "this worker has no API tokens: set "
                           "STREAMSEG_API_TOKENS=name:secret to allow requests",
                           {"WWW-Authenticate": _CHALLENGE})
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "missing_token", "send the header 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": _CHALLENGE})
        given = secret.strip().encode()
        found = None
        for known, name in self._tokens:  # compare with every token: no early exit to time
            if hmac.compare_digest(given, known):
                found = name
        if found is None:
            raise ApiError(401, "invalid_token", "the bearer token is not valid",
                           {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'})
        return found
