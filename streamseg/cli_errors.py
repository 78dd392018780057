"""What a failed ``streamseg`` command tells its user: one line on stderr and an exit status.

The one place that maps an exception to its answer, for every command:

* 2, usage or configuration: invalid ``STREAMSEG_*`` settings, a bad option
  (:class:`~streamseg.errors.ConfigError`, argparse's own errors);
* 1, a runtime failure: Redis or Kafka unreachable, the cluster refusing us,
  an erasure left incomplete, any other :class:`~streamseg.errors.StreamsegError`;
* anything else is a bug: :func:`answer` returns None and the traceback shows.

>>> from streamseg.errors import ConfigError, StoreUnavailable
>>> answer(ConfigError("--speed must be > 0"), None)
Answer(code=2, line='--speed must be > 0')
>>> answer(StoreUnavailable("Redis unavailable while reading a customer: refused"), None).code
1
>>> answer(KeyError("a bug"), None) is None
True
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError
from redis.exceptions import RedisError

from streamseg.errors import BrokerUnavailable, ConfigError, StoreUnavailable, StreamsegError
from streamseg.settings import Settings

USAGE = 2
RUNTIME = 1


class Answer(NamedTuple):
    """A command's exit status and the one line it ends with."""

    code: int
    line: str


def answer(exc: BaseException, settings: Settings | None) -> Answer | None:
    """The answer for ``exc`` raised while running a command, or None for a bug.

    ``settings``: those the command ran with (None if they did not load), to
    name the address and the variable to check.
    """
    from aiokafka.errors import KafkaError

    from streamseg.erasure import ErasureIncomplete
    from streamseg.kafka_security import kafka_unreachable

    if isinstance(exc, ValidationError):
        return Answer(USAGE, f"invalid settings: {settings_errors(exc)}")
    if isinstance(exc, ConfigError):
        return Answer(USAGE, str(exc))
    refused = None if settings is None else _refused(settings, exc)
    if refused is not None:
        if isinstance(exc, ErasureIncomplete):
            return Answer(RUNTIME, f"{refused}; its Redis data is already removed: run "
                          "`streamseg forget` again once that is fixed")
        return Answer(RUNTIME, str(refused))
    if any(isinstance(e, StoreUnavailable | RedisError) for e in _chain(exc)):
        return Answer(RUNTIME, redis_unreachable(settings, exc))
    if not isinstance(exc, ErasureIncomplete) and settings is not None and any(
            isinstance(e, KafkaConnectionError | BrokerUnavailable) for e in _chain(exc)):
        return Answer(RUNTIME, str(kafka_unreachable(settings)))
    if isinstance(exc, StreamsegError | OSError):
        return Answer(RUNTIME, str(exc) or type(exc).__name__)
    if isinstance(exc, KafkaError):
        return Answer(RUNTIME, f"Kafka: {exc}")
    return None


def settings_errors(exc: ValidationError) -> str:
    """A settings validation error as one line, naming the variables (never their values).

    >>> try:
    ...     Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc")
    ... except ValidationError as exc:
    ...     print(settings_errors(exc))
    STREAMSEG_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs STREAMSEG_KAFKA_SASL_PASSWORD
    >>> try:
    ...     Settings(batch_max="abc")
    ... except ValidationError as exc:
    ...     print(settings_errors(exc))
    STREAMSEG_BATCH_MAX: Input should be a valid integer, unable to parse string as an integer
    """
    out = []
    for err in exc.errors():
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        loc = err.get("loc") or ()
        name = f"STREAMSEG_{str(loc[0]).upper()}" if loc else ""
        # a validator's own message already names its variable
        out.append(f"{name}: {msg}" if name and not msg.startswith(name) else msg)
    return "; ".join(out)


def redis_unreachable(settings: Settings | None, exc: BaseException) -> str:
    """"cannot reach Redis at <url without password>: <why>; check STREAMSEG_REDIS_URL"."""
    where = f" at {without_password(settings.redis_url)}" if settings is not None else ""
    why = str(exc).removeprefix("Redis unavailable while ")
    return f"cannot reach Redis{where} ({why}): check STREAMSEG_REDIS_URL and that Redis is running"


def without_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``.

    >>> without_password("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> without_password("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _refused(settings: Settings, exc: BaseException) -> StreamsegError | None:
    """The cluster refused us: the line says how (credentials, TLS, an ACL)."""
    from streamseg.kafka_security import settings_access_denied

    return settings_access_denied(settings, exc)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out
