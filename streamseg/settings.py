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
import os
import tempfile
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamseg import settings_checks as checks
from streamseg.drift.windows import parse_windows
from streamseg.events.currency import Currencies

TopicRole = Literal["clickstream", "transactions", "dlq", "segment_updates", "segments", "model",
                    "drift", "audit"]
Clusterer = Literal["kmeans", "streamkmeans", "dbstream", "clustream", "denstream"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class _Connections(BaseSettings):
    """Where streamseg connects: Kafka and its security, the topics, Redis and its keys.

    The settings are one flat set (:class:`Settings`); these base classes only group
    their fields by concern, in the order the reference table lists them.
    """

    # --- connections -----------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL; a Redis "
                           "Cluster: redis+cluster://host:port[,host:port...] (seed nodes)")
    redis_wait_replicas: int = Field(
        0, ge=0, description="a worker acknowledges a batch only once this many replicas of each "
        "Redis node written to hold its writes (WAIT); 1 on a cluster with replicas survives a failover")
    app_id: str = Field("streamseg", description="Faust app id = Kafka consumer group")
    kafka_connect_timeout_s: float = Field(
        10.0, gt=0, description="how long a command waits for an unreachable Kafka cluster "
        "before it ends with one line saying so")
    data_dir: str = Field(
        default_factory=lambda: os.path.join(tempfile.gettempdir(), "streamseg"),
        description="Faust's data directory parent (<data_dir>/<app_id>-data); streamseg keeps no "
                    "state there (features live in Redis, the model on Kafka), so not the working directory")

    # --- Kafka security (docs/security.md): one set for every Kafka client ---
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL (TLS; with a client certificate for mTLS), "
        "SASL_PLAINTEXT or SASL_SSL (SASL over TLS, what managed Kafka services want)")
    kafka_ssl_cafile: str = Field(
        "", description="PEM file of the CA certificate(s) that signed the brokers' certificates "
        "(empty: the system's trust store); SSL and SASL_SSL")
    kafka_ssl_certfile: str = Field(
        "", description="client certificate (PEM, chain allowed) for brokers that require one "
        "(mTLS, ssl.client.auth=required)")
    kafka_ssl_keyfile: str = Field(
        "", description="the client certificate's private key (PEM); may be empty when "
        "kafka_ssl_certfile holds the key too")
    kafka_ssl_key_password: SecretStr = Field(
        SecretStr(""), description="password of an encrypted kafka_ssl_keyfile")
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        "PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_PLAINTEXT, SASL_SSL)")
    kafka_sasl_username: str = Field("", description="SASL user name")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password")

    # --- topics (names configurable, roles fixed) -------------------------
    topic_clickstream: str = "streamseg.clickstream.v1"
    topic_transactions: str = "streamseg.transactions.v1"
    topic_dlq: str = "streamseg.dlq.v1"
    topic_segment_updates: str = "streamseg.segment-updates.v1"
    topic_segments: str = Field("streamseg.segments.v1", description="segment catalog, compacted")
    topic_model: str = Field("streamseg.model.v1", description="model snapshots, compacted")
    topic_drift: str = "streamseg.drift.v1"
    topic_audit: str = Field("streamseg.audit.v1", description="erasure audit records (not compacted)")
    topic_partitions: int = Field(4, ge=1, description="partitions for topics we create")
    kafka_idempotence: bool = Field(
        True, description="idempotent producers (acks=all; a retried send is written once); "
        "false for brokers without InitProducerId, such as the embedded Tansu")
    topic_replication: int = Field(
        0, ge=0, description="replicas of the topics streamseg creates, Faust's leader topic "
        "included; 0: min(3, brokers in the cluster)")

    # --- redis keys ------------------------------------------------------
    key_prefix: str = Field("ss", description="prefix of every Redis key streamseg writes")
    retention_days: float = Field(
        180.0, gt=0, description="customer state expires after this long without events"
    )
    customer_history: int = Field(
        20, ge=0, le=1000, description="segment changes kept per customer for lookups (newest "
        "first, a Redis list beside its state, erased with it); 0: none kept"
    )
    dedup_horizon_days: float = Field(
        30.0,
        gt=0,
        description="event ids are remembered this long (event time) for idempotency; "
        "events older than a customer's newest event by more than this are dead-lettered as late",
    )



class _Pipeline(_Connections):
    """What the hot path admits and how the model learns, assigns and re-fits."""

    # --- hot path --------------------------------------------------------
    batch_max: int = Field(500, ge=1, description="input messages per batch (one fetch) at most")
    fetch_max_wait_ms: int = Field(
        10, ge=0, le=1500,
        description="longest a fetch waits for new records; some brokers (Tansu, the embedded "
        "one) hold a fetch this long even when records arrive, adding it to latency",
    )
    max_message_bytes: int = Field(64 * 1024, ge=256, description="larger payloads are dead letters")
    dlq_prefix_bytes: int = Field(
        4096, ge=0, le=256 * 1024,
        description="bytes of the original message a dead letter carries (with its size and SHA-256)",
    )
    fetch_partition_bytes: int = Field(
        1024 * 1024, ge=64 * 1024,
        description="most bytes one fetch reads from one input partition (max.partition.fetch.bytes);"
        " a larger record is dead-lettered by its offset unless the broker hands it over whole",
    )
    max_future_skew_s: float = Field(
        3600.0, ge=0, description="events further in the future than this are dead-lettered"
    )
    earliest_event_time: str = Field(
        "2000-01-01", description="events before this ISO-8601 date/time (UTC unless a zone is "
        "given) are dead-lettered as too_old; lower it to replay older history (1900-01-01 at most)")
    reporting_currency: str = Field("EUR", min_length=3, max_length=3, description=(
        "the one currency money is summed in (3-letter code); transactions in another "
        "currency are converted by currency_rates"))
    currency_rates: str = Field(
        "", description="units of the reporting currency per unit of another, e.g. "
        "USD:0.92,GBP:1.17; a transaction in a currency neither this nor reporting_currency "
        "names is dead-lettered as unknown_currency")
    clock: Literal["event", "wall"] = Field(
        "event", description="'now' for recency: newest event time seen, or the wall clock"
    )

    # --- model ---------------------------------------------------------------
    n_segments: int | Literal["auto"] = Field(
        6, description="segments (k, at least 2), or auto: the leader chooses k in "
        "n_segments_min..n_segments_max at each refit (docs/model.md, choosing k)")
    n_segments_min: int = Field(3, ge=2, description="auto: the fewest segments tried, and the k "
                                "the first model starts with")
    n_segments_max: int = Field(10, ge=2, description="auto: the most segments tried")
    n_segments_stability: float = Field(
        0.75, gt=0, le=1, description="auto: a k is eligible when every one of its segments is "
        "found again in bootstrap resamples with at least this mean Jaccard similarity")
    n_segments_silhouette_tolerance: float = Field(
        0.05, ge=0, le=2, description="auto: an eligible k's silhouette is at most this below "
        "the best k's")
    n_segments_hysteresis: float = Field(
        0.1, ge=0, lt=1, description="auto: the current k keeps its place until its stability falls "
        "this far below n_segments_stability (or its silhouette 2x the tolerance below the best), "
        "and a larger k must be this far above it to replace it")
    n_segments_patience: int = Field(
        3, ge=1, description="auto: k changes only after this many consecutive refits argued for "
        "a change (to the k they preferred most)")
    clusterer: Clusterer = Field(
        "kmeans", description="River clusterer (kmeans, streamkmeans, dbstream, clustream, denstream); docs/model.md compares them"
    )
    clusterer_params: str = Field(
        "{}", description='JSON object of clusterer hyperparameters, e.g. {"clustering_threshold": 2.0} '
        "(kept as canonical JSON text so settings stay hashable)",
    )
    model_refresh_every: int = Field(
        1000, ge=1, description="stream clusterers: recompute the cached macro-clusters every N learns"
    )
    kmeans_halflife: float = Field(
        0.01, gt=0, le=1, description="step of a centre towards each customer it learns: smaller "
        "is steadier (fewer membership flips), too small adapts slowly (load_tests/quality_bench.py)",
    )
    model_warmup: int = Field(
        500, ge=2, description="customer updates buffered to seed the centres before assigning"
    )
    model_warmup_s: float = Field(
        30.0, gt=0, description="a small stream's first model: seeded this long after the first "
        "event even before model_warmup updates, once enough distinct customers were seen "
        "(model_warmup_per_segment); docs/model.md")
    model_warmup_per_segment: int = Field(
        10, ge=1, description="distinct customers per segment (times n_segments) needed before "
        "model_warmup_s can seed the first model")
    seed: int = 42
    rescore_after_hours: float = Field(
        24.0, gt=0, description="re-evaluate customers whose segment is older than this (clock "
        "time, see CLOCK): recency keeps changing while a customer is silent",
    )
    model_active_days: float = Field(
        90.0, gt=0, description="the segments learn from, and are re-fitted on, customers active "
        "within this many days (clock time, see CLOCK); customers silent for longer are still "
        "re-scored, assigned, profiled and in the value fit, but a growing base of long-lapsed "
        "customers no longer pulls centres away from the active ones (docs/model.md)")
    rescore_every_s: float = Field(
        5.0, gt=0, description="how often the leader starts a re-scoring sweep (none while one is under way)")
    rescore_batch: int = Field(
        50, ge=1, description="customers re-scored per Redis round trip; the engine lock is held for "
        "one batch, so an event waits behind one batch of the sweep at most")
    rescore_max: int = Field(20_000, ge=1, description="customers re-scored per sweep at most")
    rescore_share: float = Field(
        0.2, gt=0, le=1, description="share of the worker's time the live sweep may take: after each "
        "batch it pauses (1 - share) / share times as long as the batch took, so events keep their "
        "latency when many customers fall due at once (after an outage, a backlog, or every day on a "
        "large base); steps of history are not paced (they must not depend on speed)")
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
    segment_min_share: float = Field(
        0.02, ge=0, le=1, description="a live segment holding less than this share of the "
        "leader's sample is flagged 'small' in the catalog (docs/model.md: validation)",
    )
    segment_min_silhouette: float = Field(
        0.1, ge=-1, le=1, description="a live segment whose members' mean silhouette is below "
        "this is flagged 'weak' in the catalog (docs/model.md: validation)",
    )
    history_step_hours: float = Field(
        24.0, ge=0, description="reading history (clock=event, events over 10 minutes behind the "
        "wall clock): the leader re-fits and re-scores once per this many hours of event time, "
        "batches paused, instead of on its wall-clock timers, so replays are reproducible "
        "(0: off, the timers as live; docs/model.md)")
    sample_process: bool = Field(
        True, description="the leader reads its refresh sample, re-fits and builds profiles in a "
        "child process, so that work never holds the worker's interpreter lock (false: threads)",
    )
    sample_malloc_trim: bool = Field(
        True, description="the sample process hands freed heap back to the system after each "
        "refresh (glibc malloc_trim); false keeps it, for comparison (load_tests/sample_memory.py "
        "--no-trim)",
    )
    sample_nice: int = Field(
        10, ge=0, le=19, description="the sample processes (re-fits, profiles, validation, "
        "customer-value fits) run this much nicer than the worker, so on a machine whose cores "
        "are busy their bursts of model work yield to the batch loop (0: the same priority)",
    )
    worker_id: str = Field("", description="stable id of this worker (default: host:web_port)")
    # --- customer value (streamseg/value, docs/value.md) ----------------------------
    value_fit: bool = Field(
        True, description="the leader fits the customer-value model (BG/NBD + Gamma-Gamma, "
        "pymc-marketing) on its sample at each catalog refresh, in the sample process")
    value_refit_s: float = Field(
        300.0, gt=0, description="the leader re-fits the value model at most this often, in a "
        "sample process of its own beside the catalog refresh (the first fit as soon as the "
        "sample has enough buyers)")
    value_horizon_days: float = Field(
        90.0, gt=0, description="days ahead that churn risk (no purchase), expected purchases "
        "and lifetime value look")
    value_risk_bands: str = Field(
        "low:0,medium:0.5,high:0.8", description="churn-risk bands as name:lower bound, "
        "ascending from 0; the last band is the high-risk one alerts watch")
    value_band_margin: float = Field(
        0.05, ge=0, lt=1, description="a customer's published risk band changes only once the "
        "churn risk is this far past the boundary: no flapping (like segment_margin)")



class _Operations(_Pipeline):
    """How a running worker reports and is reached: drift, timers, web, API access."""

    # --- drift (see streamseg/drift/) -------------------------------------------
    drift_windows: str = Field(
        "1m,15m", description="sliding window lengths, e.g. '1m,15m' or '1d,7d' (units s m h d w); "
        "each a multiple of the shortest, which is also how often windows report. They follow "
        "the engine's clock: event time with clock=event",
    )
    drift_min_customers: int = Field(
        100, ge=1, description="a window reports only when it and its reference hold this many "
        "customer updates")
    drift_composition_alert: float = Field(0.15, gt=0, le=1, description="alert above this "
                                           "composition shift (total variation distance)")
    drift_psi_alert: float = Field(0.2, gt=0, description="alert above this segment-share PSI")
    drift_feature_psi_alert: float = Field(0.2, gt=0, description="alert when a model input's "
                                           "PSI exceeds this")
    drift_emerging_alert: float = Field(0.15, gt=0, le=1, description="alert when more than this "
                                        "share of customers is far from every centre")
    drift_shrink_alert: float = Field(0.15, gt=0, le=1, description="alert when the customers "
                                      "active in a window fall by more than this share of the "
                                      "reference window's (a persona going silent)")
    drift_high_risk_alert: float = Field(
        0.05, gt=0, le=1, description="alert when the share of scored customer updates in the "
        "highest risk band rises by more than this (share points) against the reference window")
    drift_churn_risk_alert: float = Field(
        0.10, gt=0, le=1, description="alert when a segment's mean churn risk rises by more "
        "than this against the reference window")
    drift_value_at_risk_alert: float = Field(
        0.25, gt=0, description="alert when the high-risk customers' share of the spend to date "
        "of the customers scored rises by more than this (relative) against the reference "
        "window")
    drift_emerging_quantile: float = Field(
        0.95, gt=0, lt=1, description="'far' = beyond this quantile of the reference window's "
        "distances (unless drift_emerging_distance is set)")
    drift_emerging_distance: float = Field(
        0.0, ge=0, description="fixed 'far' distance in standardized units (0: use the quantile)")
    drift_interval_s: float = Field(1.0, gt=0, description="how often the worker closes windows")

    # --- worker timers (the periods not named above) ----------------------------
    held_back_every_s: float = Field(
        1.0, gt=0, description="how often customers held back for want of a model are assigned "
        "(never less often than model_sync_s)")
    profiles_every_s: float = Field(
        5.0, gt=0, description="how often a worker reads the segment profiles from Redis (never "
        "more often than model_sync_s)")
    segment_sizes_every_s: float = Field(
        1.0, gt=0, description="how often a worker reads segment sizes from Redis for "
        "streamseg_segment_customers")
    worker_status_every_s: float = Field(
        1.0, gt=0, description="how often a worker writes its clock and model version to Redis, "
        "for `streamseg api`")
    consumer_lag_every_s: float = Field(
        2.0, gt=0, description="how often a worker refreshes streamseg_consumer_lag_messages (one "
        "ListOffsets request each)")
    loop_lag_probe_s: float = Field(
        0.1, gt=0, description="the sleep whose lateness streamseg_event_loop_lag_seconds records")

    # --- web / metrics ---------------------------------------------------------
    web_port: int = Field(6066, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    api_port: int = Field(
        6067, ge=1, le=65535, description="port of `streamseg api`, the API in a process of its own")
    api_slice_ms: float = Field(
        0.5, ge=0, le=100, description="`streamseg api` asks Linux (6.12+) for scheduler time slices "
        "this short, so a lookup that arrives preempts batch work sooner (same CPU share; "
        "0.1-100 ms, 0 = the kernel's default)",
    )
    log_level: Literal["crit", "error", "warn", "info", "debug"] = "info"

    # --- HTTP API access control -------------------------------------------
    api_tokens: str = Field(
        "", description="bearer tokens for /v1/*, as name:secret[,name:secret...]; the name is the "
        "actor in audit records; empty = every /v1 request is refused (401)"
    )
    metrics_auth: bool = Field(False, description="require a bearer token for /metrics too")
    web_in_thread: bool = Field(
        True, description="serve HTTP from its own thread and event loop, so lookups do not wait "
        "behind a batch"
    )



class Settings(_Operations):
    """Everything a worker, the generator or ``streamseg dev`` can be told (fields by concern
    in :class:`_Connections`, :class:`_Pipeline` and :class:`_Operations`)."""

    # hide_input_in_errors: a bad API token or a Redis URL with a password must not reach logs
    model_config = SettingsConfigDict(env_prefix="STREAMSEG_", frozen=True, extra="ignore",
                                      hide_input_in_errors=True)

    # --- checks, one function each in streamseg/settings_checks.py ------------------
    _bootstrap = field_validator("kafka_bootstrap")(checks.bootstrap_listed)
    _k = field_validator("n_segments", mode="before")(checks.segments_count)
    _k_range = model_validator(mode="after")(checks.segments_range)
    _params = field_validator("clusterer_params", mode="before")(checks.params_json)
    _redis = field_validator("redis_url")(checks.redis_scheme)
    _slice = field_validator("api_slice_ms")(checks.slice_range)
    _windows = field_validator("drift_windows")(checks.windows_parse)
    _earliest = field_validator("earliest_event_time")(checks.earliest_parses)
    _currencies = model_validator(mode="after")(checks.currencies_parse)
    _tokens = field_validator("api_tokens")(checks.tokens_well_formed)
    _security = model_validator(mode="after")(checks.security_consistent)
    _bands = field_validator("value_risk_bands")(checks.risk_bands_parse)

    @property
    def drift_window_seconds(self) -> list[int]:
        return parse_windows(self.drift_windows)

    @property
    def earliest_event_ms(self) -> int:
        return checks.parse_earliest(self.earliest_event_time)

    @property
    def currencies(self) -> Currencies:
        """The reporting currency and the rate table (:mod:`streamseg.events.currency`)."""
        return Currencies.parse(self.reporting_currency, self.currency_rates)

    @property
    def api_token_map(self) -> dict[str, str]:
        """secret -> name of every configured API token."""
        return checks.parse_api_tokens(self.api_tokens)

    @property
    def value_bands(self) -> tuple[tuple[str, float], ...]:
        """``value_risk_bands`` parsed: (name, lower bound) pairs, ascending."""
        return checks.parse_risk_bands(self.value_risk_bands)

    @property
    def segments_auto(self) -> bool:
        """``STREAMSEG_N_SEGMENTS=auto``: the leader chooses k (streamseg.segmenting.choose_k)."""
        return self.n_segments == "auto"

    @property
    def start_segments(self) -> int:
        """The k clusterers seed with: ``n_segments``, or ``n_segments_min`` under auto."""
        return self.n_segments_min if self.n_segments == "auto" else self.n_segments

    @property
    def clusterer_kwargs(self) -> dict[str, float]:
        """``clusterer_params`` as keyword arguments for the clusterer."""
        return dict(json.loads(self.clusterer_params))

    @property
    def kafka_uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def kafka_uses_sasl(self) -> bool:
        return self.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def kafka_bootstrap_list(self) -> list[str]:
        return [h.strip() for h in self.kafka_bootstrap.split(",") if h.strip()]

    def faust_datadir(self) -> str:
        """``<data_dir>/<app_id>-data``, its parent created (Faust creates only the last level)."""
        os.makedirs(self.data_dir, exist_ok=True)
        return os.path.join(self.data_dir, f"{self.app_id}-data")

    def topic(self, role: TopicRole) -> str:
        """The configured name of the topic playing ``role``."""
        return str(getattr(self, f"topic_{role}"))

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.topic_clickstream, self.topic_transactions)

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes``, validated like the original (``model_copy`` skips that).

        >>> Settings(n_segments=4).replace(topic_replication=3).topic_replication
        3
        """
        return type(self).model_validate({**self.model_dump(), **changes})


def settings_table() -> str:
    """docs/operations.md's settings reference, generated from :class:`Settings` (a test keeps them equal).

    Secret fields show no default. A computed default under the temporary directory reads
    ``<tempdir>``, so the table is the same on every machine.

    >>> settings_table().splitlines()[2].startswith("| `STREAMSEG_KAFKA_BOOTSTRAP` | str |")
    True
    """
    from typing import get_args, get_origin

    def text(v: object) -> str:
        if isinstance(v, bool):
            return f"`{str(v).lower()}`"
        if v == "":
            return "empty"
        return f"`{v}`".replace(tempfile.gettempdir(), "<tempdir>")

    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, f in Settings.model_fields.items():
        kind = f.annotation
        if get_origin(kind) is Literal:
            typ = "one of " + ", ".join(f"`{v}`" for v in get_args(kind))
        elif name == "n_segments":
            typ = "int, >= 2, or `auto`"
        else:
            typ = "secret" if kind is SecretStr else getattr(kind, "__name__", str(kind))
        bounds = [f"{op} {getattr(m, attr)}" for m in f.metadata
                  for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if hasattr(m, attr)]
        typ = ", ".join([typ, *bounds])
        if kind is SecretStr:
            default = "(secret: not shown)"
        else:
            default = text(f.default_factory() if f.default_factory else f.default)  # type: ignore[call-arg]
        desc = (f.description or "").replace("|", "\\|").replace("<", "\\<")
        rows.append(f"| `STREAMSEG_{name.upper()}` | {typ} | {default} | {desc} |")
    return "\n".join(rows)
