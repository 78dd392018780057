"""Typed, frozen settings loaded once from ``STREAMSEG_*`` environment variables.

Build one :class:`Settings` at start-up and pass it in; nothing reads a global.

>>> s = Settings(kafka_bootstrap="k1:9092,k2:9092")
>>> s.kafka_bootstrap_list
['k1:9092', 'k2:9092']
>>> s.topic("clickstream")
'streamseg.clickstream.v1'
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TopicRole = Literal["clickstream", "transactions", "dlq", "segment_updates"]


class Settings(BaseSettings):
    """Everything a worker, the generator or ``streamseg dev`` can be told."""

    model_config = SettingsConfigDict(env_prefix="STREAMSEG_", frozen=True, extra="ignore")

    # --- connections -----------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL")
    app_id: str = Field("streamseg", description="Faust app id = Kafka consumer group")

    # --- topics (names configurable, roles fixed) -------------------------
    topic_clickstream: str = "streamseg.clickstream.v1"
    topic_transactions: str = "streamseg.transactions.v1"
    topic_dlq: str = "streamseg.dlq.v1"
    topic_segment_updates: str = "streamseg.segment-updates.v1"
    topic_partitions: int = Field(4, ge=1, description="partitions for topics we create")
    topic_replication: int = Field(1, ge=1)

    # --- redis keys ------------------------------------------------------
    key_prefix: str = Field("ss", description="prefix of every Redis key streamseg writes")
    retention_days: float = Field(
        180.0, gt=0, description="customer state expires after this long without events"
    )
    dedup_horizon_days: float = Field(
        30.0,
        gt=0,
        description="event ids are remembered this long (event time) for idempotency; "
        "events older than a customer's newest event by more than this are dead-lettered as late",
    )

    # --- hot path --------------------------------------------------------
    batch_max: int = Field(500, ge=1, description="input messages per batch (one fetch) at most")
    fetch_max_wait_ms: int = Field(
        10, ge=0, le=1500,
        description="longest a fetch waits for new records; some brokers (Tansu, the embedded "
        "one) hold a fetch this long even when records arrive, adding it to latency",
    )
    max_message_bytes: int = Field(64 * 1024, ge=256, description="larger payloads are dead letters")
    max_future_skew_s: float = Field(
        3600.0, ge=0, description="events further in the future than this are dead-lettered"
    )
    clock: Literal["event", "wall"] = Field(
        "event", description="'now' for recency: newest event time seen, or the wall clock"
    )

    # --- model ---------------------------------------------------------------
    n_segments: int = Field(6, ge=2)
    clusterer: Literal["kmeans"] = "kmeans"
    kmeans_halflife: float = Field(0.05, gt=0, le=1)
    model_warmup: int = Field(
        500, ge=2, description="customer updates buffered to seed the centres before assigning"
    )
    seed: int = 42

    # --- web / metrics ---------------------------------------------------------
    web_port: int = Field(6066, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    log_level: Literal["crit", "error", "warn", "info", "debug"] = "info"

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_not_empty(cls, v: str) -> str:
        if not [h for h in v.split(",") if h.strip()]:
            raise ValueError("STREAMSEG_KAFKA_BOOTSTRAP must list at least one host:port")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("STREAMSEG_REDIS_URL must start with redis://, rediss:// or unix://")
        return v

    @property
    def kafka_bootstrap_list(self) -> list[str]:
        return [h.strip() for h in self.kafka_bootstrap.split(",") if h.strip()]

    def topic(self, role: TopicRole) -> str:
        """The configured name of the topic playing ``role``."""
        return str(getattr(self, f"topic_{role}"))

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.topic_clickstream, self.topic_transactions)
