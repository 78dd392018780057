"""Retrying outages: a batch is never dropped and never acknowledged early.

Redis and Kafka outages (timeouts, lost connections, a broker without a
leader) are retried with a capped backoff and counted; anything else (a bug, a
refused credential) is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streamseg.errors import StoreUnavailable
from streamseg.kafka_security import is_access_error
from streamseg.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


class Retrier:
    """Runs an operation until it succeeds, backing off while Redis or Kafka are out.

    >>> import asyncio
    >>> from prometheus_client import CollectorRegistry
    >>> retry = Retrier(Metrics(CollectorRegistry()))
    >>> async def ok() -> str:
    ...     return "done"
    >>> asyncio.run(retry(ok, "an example"))
    'done'
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """Retry outages with capped backoff: never drop a batch, never ack it early."""
        delay = 0.1
        while True:
            try:
                return await op()
            except StoreUnavailable as exc:  # the store's contract: every Redis outage, nothing else
                self.metrics.store_retries.inc()
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            except Exception as exc:  # Kafka errors from the producer
                if not _is_transient(exc):
                    raise
                self.metrics.publish_retries.inc()
                log.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


def _is_transient(exc: Exception) -> bool:
    """Kafka errors are retried, except a refusal (missing ACL, credentials) and a record the
    broker refuses for what it is (:func:`is_record_refused`): either comes back on every retry."""
    try:
        from aiokafka.errors import KafkaError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, KafkaError) and not is_access_error(exc) and not is_record_refused(exc)


def is_record_refused(exc: BaseException) -> bool:
    """The broker (or the producer's own check) refuses the record itself: too large for the
    topic's ``max.message.bytes`` or the producer's ``max_request_size``, corrupt, or its
    timestamp out of range. Sending it again cannot succeed.

    >>> from aiokafka.errors import MessageSizeTooLargeError, KafkaConnectionError
    >>> is_record_refused(MessageSizeTooLargeError()), is_record_refused(KafkaConnectionError())
    (True, False)
    """
    from aiokafka import errors

    refused = (errors.MessageSizeTooLargeError, errors.RecordListTooLargeError,
               errors.CorruptRecordException, errors.InvalidTimestampError)
    cause: BaseException | None = exc
    while cause is not None:  # Faust's producer wraps the client's own check in ProducerSendError
        if isinstance(cause, refused):
            return True
        cause = cause.__cause__
    return False
