"""One exception tree for everything streamseg raises on purpose."""

from __future__ import annotations


class StreamsegError(Exception):
    """Base class: catch this to catch every error streamseg raises itself."""


class ConfigError(StreamsegError):
    """Settings are missing or contradict each other; the message says which."""


class InvalidEvent(StreamsegError):
    """An input message could not be decoded or validated.

    ``reason`` is a short, stable machine label (used as a metric label and in
    the dead-letter record); ``detail`` is the human-readable explanation.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StoreUnavailable(StreamsegError):
    """Redis/Valkey could not be reached; the caller retries, never acks."""


class AccessRefused(StreamsegError):
    """Kafka or Redis refused this client (credentials, TLS, an ACL): retrying cannot help.

    The message says what was refused and which setting to check; a worker stops on it.
    """


class StoreRefused(AccessRefused):
    """Redis/Valkey refused the credentials or an ACL (WRONGPASS, NOAUTH, NOPERM)."""


class DevStackError(StreamsegError):
    """The embedded broker or Valkey server failed to start."""


class BrokerUnavailable(StreamsegError):
    """No Kafka broker answered within STREAMSEG_KAFKA_CONNECT_TIMEOUT_S; the message says
    where it looked and what to check."""
