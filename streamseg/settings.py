"""Typed, frozen settings loaded once from ``STREAMSEG_*`` environment variables.

Build one :class:`Settings` at start-up and pass it in; nothing reads a global.

>>> s = Settings(kafka_bootstrap="k1:9092,k2:9092")
>>> s.kafka_bootstrap_list
['k1:9092', 'k2:9092']
>>> s.topic("clickstream")
'streamseg.clickstream.v1'
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TopicRole = Literal["clickstream", "transactions", "dlq", "segment_updates", "segments", "model"]
Clusterer = Literal["kmeans", "streamkmeans", "dbstream", "clustream", "denstream"]


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
    topic_segments: str = Field("streamseg.segments.v1", description="segment catalog, compacted")
    topic_model: str = Field("streamseg.model.v1", description="model snapshots, compacted")
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
    clusterer: Clusterer = Field(
        "kmeans", description="River clusterer; the README's Segmentation section compares them"
    )
    clusterer_params: str = Field(
        "{}", description='JSON object of clusterer hyperparameters, e.g. {"clustering_threshold": 2.0} '
        "(kept as canonical JSON text so settings stay hashable)",
    )
    model_refresh_every: int = Field(
        1000, ge=1, description="stream clusterers: recompute the cached macro-clusters every N learns"
    )
    kmeans_halflife: float = Field(0.05, gt=0, le=1)
    model_warmup: int = Field(
        500, ge=2, description="customer updates buffered to seed the centres before assigning"
    )
    seed: int = 42
    segment_margin: float = Field(
        0.1, ge=0, lt=1, description="a customer moves only if the new centre is this much "
        "(relative) nearer than its current one: no flapping at boundaries",
    )
    model_sync_s: float = Field(
        2.0, gt=0, description="workers publish their local model and the leader merges this often"
    )
    model_sync_events: int = Field(
        2000, ge=1, description="without a Faust leader (in-process engine): refresh the model "
        "after this many learned updates",
    )
    identity_max_move: float = Field(
        1.5, gt=0, description="standardized units a centre may move between versions and keep its id"
    )
    profile_sample: int = Field(20_000, ge=100, description="customers sampled for segment profiles")
    catalog_refresh_s: float = Field(30.0, gt=0, description="profiles/catalog refresh period")
    worker_id: str = Field("", description="stable id of this worker (default: host:web_port)")

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

    @field_validator("clusterer_params", mode="before")
    @classmethod
    def _params_json(cls, v: object) -> str:
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

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("STREAMSEG_REDIS_URL must start with redis://, rediss:// or unix://")
        return v

    @property
    def clusterer_kwargs(self) -> dict[str, float]:
        """``clusterer_params`` as keyword arguments for the clusterer."""
        return dict(json.loads(self.clusterer_params))

    @property
    def kafka_bootstrap_list(self) -> list[str]:
        return [h.strip() for h in self.kafka_bootstrap.split(",") if h.strip()]

    def topic(self, role: TopicRole) -> str:
        """The configured name of the topic playing ``role``."""
        return str(getattr(self, f"topic_{role}"))

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.topic_clickstream, self.topic_transactions)
