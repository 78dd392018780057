"""The checks :class:`~streamseg.settings.Settings` runs on its values, one function each.

Each field check takes the value and returns it (normalised) or raises
``ValueError`` with a sentence naming the variable; :func:`security_consistent`
checks the Kafka security settings together. Plain functions, so each is
testable alone and the settings class stays a list of fields.

>>> redis_scheme("redis://cache:6379/0")
'redis://cache:6379/0'
>>> params_json('{"b": 1, "a": 2.5}')
'{"a": 2.5, "b": 1}'
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from streamseg.drift.windows import parse_windows
from streamseg.errors import ConfigError

if TYPE_CHECKING:
    from streamseg.settings import Settings


def bootstrap_listed(v: str) -> str:
    if not [h for h in v.split(",") if h.strip()]:
        raise ValueError("STREAMSEG_KAFKA_BOOTSTRAP must list at least one host:port")
    return v


def segments_count(v: object) -> object:
    """``STREAMSEG_N_SEGMENTS``: an integer of at least 2, or ``auto``."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    try:
        k = int(v) if isinstance(v, str | int) and not isinstance(v, bool) else None
    except ValueError:
        k = None
    if k is None or k < 2:
        raise ValueError(f"STREAMSEG_N_SEGMENTS must be an integer of at least 2 or auto, got {v!r}")
    return k


def segments_range(s: Settings) -> Settings:
    """Under auto, a non-empty k range, with a clusterer that follows the global centres."""
    if s.n_segments_min > s.n_segments_max:
        raise ValueError(f"STREAMSEG_N_SEGMENTS_MIN ({s.n_segments_min}) is above "
                         f"STREAMSEG_N_SEGMENTS_MAX ({s.n_segments_max})")
    if s.n_segments == "auto" and s.clusterer in ("dbstream", "denstream"):
        raise ValueError(f"STREAMSEG_N_SEGMENTS=auto needs a clusterer that follows the global "
                         f"centres (kmeans, streamkmeans, clustream); {s.clusterer} finds its own "
                         "number of segments")
    return s


def params_json(v: object) -> str:
    """Clusterer parameters as canonical JSON text (so settings stay hashable)."""
    try:
        params = json.loads(v) if isinstance(v, str) else v
    except ValueError:
        params = None
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(x, int | float) and not isinstance(x, bool)
        for k, x in params.items()
    ):
        raise ValueError('STREAMSEG_CLUSTERER_PARAMS must be a JSON object of numbers, '
                         'e.g. {"clustering_threshold": 2.0}')
    return json.dumps(params, sort_keys=True)


def redis_scheme(v: str) -> str:
    if not v.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("STREAMSEG_REDIS_URL must start with redis://, rediss:// or unix://")
    return v


def slice_range(v: float) -> float:
    if v and v < 0.1:
        raise ValueError("STREAMSEG_API_SLICE_MS is 0 (the kernel's default) or 0.1-100 ms")
    return v


def windows_parse(v: str) -> str:
    try:
        parse_windows(v)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return v


def tokens_well_formed(v: str) -> str:
    parse_api_tokens(v)  # raises ValueError with the offending entry
    return v


def security_consistent(s: Settings) -> Settings:
    problems = kafka_security_problems(s)
    if problems:
        raise ValueError("; ".join(problems))
    return s


MIN_TOKEN_CHARS = 16


def kafka_security_problems(s: Settings) -> list[str]:
    """What is wrong with the Kafka security settings, one sentence each (empty: nothing).

    Settings that would be silently ignored count as wrong: a SASL password
    with a PLAINTEXT protocol is a mistake, not a wish.
    """
    protocol = f"STREAMSEG_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol}"
    problems: list[str] = []
    password = s.kafka_sasl_password.get_secret_value()
    if s.kafka_uses_sasl:
        if not s.kafka_sasl_username.strip():
            problems.append(f"{protocol} needs STREAMSEG_KAFKA_SASL_USERNAME")
        if not password:
            problems.append(f"{protocol} needs STREAMSEG_KAFKA_SASL_PASSWORD")
    elif s.kafka_sasl_username or password:
        problems.append(f"STREAMSEG_KAFKA_SASL_USERNAME/PASSWORD are set but {protocol} does not "
                        "use SASL: set it to SASL_SSL (or SASL_PLAINTEXT)")
    files = {"STREAMSEG_KAFKA_SSL_CAFILE": s.kafka_ssl_cafile,
             "STREAMSEG_KAFKA_SSL_CERTFILE": s.kafka_ssl_certfile,
             "STREAMSEG_KAFKA_SSL_KEYFILE": s.kafka_ssl_keyfile}
    key_password = bool(s.kafka_ssl_key_password.get_secret_value())
    if not s.kafka_uses_tls:
        given = [name for name, path in files.items() if path]
        if key_password:
            given.append("STREAMSEG_KAFKA_SSL_KEY_PASSWORD")
        if given:
            problems.append(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set but "
                            f"{protocol} does not use TLS: set it to SSL or SASL_SSL")
        return problems
    for name, path in files.items():
        if path and not os.path.isfile(path):
            problems.append(f"{name}: no such file: {path}")
        elif path and not os.access(path, os.R_OK):
            problems.append(f"{name}: cannot read {path}")
    if s.kafka_ssl_keyfile and not s.kafka_ssl_certfile:
        problems.append("STREAMSEG_KAFKA_SSL_KEYFILE is set without STREAMSEG_KAFKA_SSL_CERTFILE "
                        "(the client certificate it belongs to)")
    elif (s.kafka_ssl_certfile and not s.kafka_ssl_keyfile and os.path.isfile(s.kafka_ssl_certfile)
          and not _holds_private_key(s.kafka_ssl_certfile)):
        problems.append("STREAMSEG_KAFKA_SSL_CERTFILE holds no private key: set "
                        "STREAMSEG_KAFKA_SSL_KEYFILE to the client certificate's key")
    if key_password and not s.kafka_ssl_certfile:
        problems.append("STREAMSEG_KAFKA_SSL_KEY_PASSWORD is set without a client certificate "
                        "(STREAMSEG_KAFKA_SSL_CERTFILE, STREAMSEG_KAFKA_SSL_KEYFILE)")
    return problems


def _holds_private_key(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return b"PRIVATE KEY-----" in fh.read()
    except OSError:
        return False


def parse_api_tokens(spec: str) -> dict[str, str]:
    """``"ops:s3cr3t...,svc:..."`` -> {secret: name}; refuses short or unnamed secrets.

    >>> parse_api_tokens("ops:0123456789abcdef, svc:fedcba9876543210")
    {'0123456789abcdef': 'ops', 'fedcba9876543210': 'svc'}
    >>> parse_api_tokens("")
    {}
    """
    out: dict[str, str] = {}
    for i, entry in enumerate(e.strip() for e in spec.split(",")):
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"STREAMSEG_API_TOKENS entries must look like name:secret (entry {i + 1} "
                             "has no name)")
        if len(secret.strip()) < MIN_TOKEN_CHARS:
            raise ValueError(f"STREAMSEG_API_TOKENS: the secret of {name.strip()!r} is shorter than "
                             f"{MIN_TOKEN_CHARS} characters")
        out[secret.strip()] = name.strip()
    return out




def earliest_parses(v: str) -> str:
    parse_earliest(v)
    return v


def currencies_parse(s: Settings) -> Settings:
    """The reporting currency and the rate table parse (:mod:`streamseg.events.currency`)."""
    from streamseg.events.currency import Currencies

    Currencies.parse(s.reporting_currency, s.currency_rates)
    return s


def parse_earliest(text: str) -> int:
    """``STREAMSEG_EARLIEST_EVENT_TIME`` as epoch ms; ValueError unless ISO-8601 within 1900-2100.

    >>> parse_earliest("1990-01-01"), parse_earliest("19900101")
    (631152000000, 631152000000)
    """
    from streamseg.events.models import parse_ts

    stripped = text.strip()
    if not stripped or (stripped.isdigit() and len(stripped) not in (8, 14)):  # not an epoch
        raise ValueError(f"STREAMSEG_EARLIEST_EVENT_TIME must be an ISO-8601 date, got {text!r}")
    try:
        return parse_ts(text)
    except ValueError as exc:
        raise ValueError(f"STREAMSEG_EARLIEST_EVENT_TIME: {exc}") from None


def parse_risk_bands(text: str) -> tuple[tuple[str, float], ...]:
    """``STREAMSEG_VALUE_RISK_BANDS`` as (name, lower bound) pairs; ValueError unless the bounds
    start at 0 and rise within [0, 1].

    >>> parse_risk_bands("low:0, medium:0.5, high:0.8")
    (('low', 0.0), ('medium', 0.5), ('high', 0.8))
    """
    bands = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, bound = part.partition(":")
        try:
            bands.append((name.strip(), float(bound)))
        except ValueError:
            raise ValueError(f"STREAMSEG_VALUE_RISK_BANDS: {part!r} is not name:lower_bound") from None
        if not sep or not name.strip():
            raise ValueError(f"STREAMSEG_VALUE_RISK_BANDS: {part!r} is not name:lower_bound")
    bounds = [b for _, b in bands]
    if not bands or bounds[0] != 0.0 or bounds != sorted(set(bounds)) or bounds[-1] > 1.0:
        raise ValueError(f"STREAMSEG_VALUE_RISK_BANDS must start at 0 and rise within [0, 1], got {text!r}")
    return tuple(bands)


def risk_bands_parse(v: str) -> str:
    parse_risk_bands(v)
    return v
