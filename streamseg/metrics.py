"""Prometheus metrics, registered on a registry the caller passes in.

Names follow ``streamseg_<noun>_<unit>[_total]``. Segment sizes are a gauge the
worker refreshes from Redis, so every worker reports the global picture.

>>> from prometheus_client import CollectorRegistry
>>> m = Metrics(CollectorRegistry())
>>> m.events.labels(topic="t", outcome="processed").inc(3)
>>> m.registry.get_sample_value("streamseg_events_total", {"topic": "t", "outcome": "processed"})
3.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Finer around the 10-100 ms that matter for end-to-end latency, so percentiles
#: read from the histogram (``streamseg bench``) are not just bucket edges.
EVENT_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04,
                         0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "streamseg_events_total",
            "Input events by source topic and outcome "
            "(processed, duplicate, late, dead_letter)",
            ["topic", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "streamseg_dead_letters_total", "Dead-lettered inputs by reason", ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "streamseg_processing_latency_seconds",
            "From the input message's Kafka timestamp to its batch being fully processed",
            buckets=EVENT_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_duration = Histogram(
            "streamseg_batch_duration_seconds", "Wall time to process one batch",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.batch_size = Histogram(
            "streamseg_batch_events", "Events per processed batch",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000), registry=registry,
        )
        self.segment_size = Gauge(
            "streamseg_segment_customers", "Customers currently in each segment",
            ["segment", "name"], registry=registry,
        )
        self.membership_changes = Counter(
            "streamseg_membership_changes_total",
            "Segment membership changes published (from='none' on first assignment)",
            ["from_segment", "to_segment"],
            registry=registry,
        )
        self.model_version = Gauge(
            "streamseg_model_version", "Version of the segment model in use", registry=registry
        )
        self.store_retries = Counter(
            "streamseg_store_retries_total", "Redis operations retried after an outage",
            registry=registry,
        )
