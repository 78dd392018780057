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

import gc
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from streamseg.drift.alerts import ALERT_NAMES

if TYPE_CHECKING:
    from streamseg.drift.alerts import Thresholds
    from streamseg.drift.report import DriftReport

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Finer around the 10-100 ms that matter for end-to-end latency, so percentiles
#: read from the histogram (``streamseg bench``) are not just bucket edges.
EVENT_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04,
                         0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def exposition(registry: CollectorRegistry, names: Sequence[str] = ()) -> bytes:
    """The text page of ``registry``; with ``names``, only those samples (``/metrics?name[]=...``).

    The same filter as prometheus_client's own HTTP handler: a sample name
    (``streamseg_events_total``, ``..._bucket``) or a family's. Only the
    collectors that hold one of the names are collected, so a probe that polls
    a few counters often (the bench, many times a second) does not pay for the
    whole page: the drift and forecast gauges make it thousands of lines.

    >>> m = Metrics(CollectorRegistry())
    >>> m.events.labels(topic="t", outcome="processed").inc()
    >>> page = exposition(m.registry, ["streamseg_events_total"]).decode()
    >>> [line.split("{")[0] for line in page.splitlines() if not line.startswith("#")]
    ['streamseg_events_total']
    """
    return generate_latest(registry.restricted_registry(names) if names else registry)


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
        self.applied_ahead = Counter(
            "streamseg_batches_applied_ahead_total", "Batches whose events went to the store while "
            "the batch before them was still segmented and published (docs/performance.md)",
            registry=registry,
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
        self.history_pending = Gauge(
            "streamseg_history_pending", "1 while this worker reads history (events more than "
            "10 minutes behind the wall clock; the leader's model work runs at its event-time "
            "steps) or the step that ends it has not run yet", registry=registry
        )
        self.store_retries = Counter(
            "streamseg_store_retries_total", "Redis operations retried after an outage",
            registry=registry,
        )
        self.loop_lag = Histogram(
            "streamseg_event_loop_lag_seconds",
            "How late a 100 ms timer fires on the worker's event loop: the time the loop was "
            "blocked (a long batch step, a timer, garbage collection)",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.gc_pause = Histogram(
            "streamseg_gc_pause_seconds", "Python garbage-collection pauses by generation",
            ["generation"], buckets=GC_BUCKETS, registry=registry,
        )
        for generation in ("0", "1", "2"):  # present from the start: "no pause yet" reads as 0
            self.gc_pause.labels(generation)
        self.publish_retries = Counter(
            "streamseg_publish_retries_total", "Kafka sends retried after a broker error or outage",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "streamseg_consumer_lag_messages",
            "Input messages not yet committed: partition end offset - committed offset",
            ["topic", "partition"], registry=registry,
        )
        self._failures(registry)
        self._value(registry)
        self.drift = DriftMetrics(registry)

    def _value(self, registry: CollectorRegistry) -> None:
        """Customer value as the leader last measured it on its sample (docs/value.md)."""
        self.value_high_risk_share = Gauge(
            "streamseg_value_high_risk_share",
            "Share of segmented customers in the highest churn-risk band (leader's sample)",
            registry=registry)
        self.value_at_risk = Gauge(
            "streamseg_value_at_risk",
            "Net spend to date of the customers in the highest churn-risk band, scaled to "
            "the segments' sizes (reporting currency)", registry=registry)
        self.value_lifetime = Gauge(
            "streamseg_value_lifetime_value",
            "Expected spend of all segmented customers over the value horizon (reporting "
            "currency)", registry=registry)

    def _failures(self, registry: CollectorRegistry) -> None:
        """What went wrong and was handled: failed timer ticks, key mismatches, lost outputs."""
        self.timer_failures = Counter(
            "streamseg_timer_failures_total",
            "Timer ticks that failed and were logged, by timer; the next tick tries again",
            ["timer"], registry=registry,
        )
        self.rescored = Counter(
            "streamseg_rescored_customers_total",
            "Customers the live re-scoring sweep evaluated (silent for rescore_after_hours)",
            registry=registry,
        )
        self.rescore_cut = Counter(
            "streamseg_rescore_cut_total",
            "Live sweeps stopped with customers still due (rescore_max ran out; the rest waits "
            "for the next): rising at every sweep, the sweep is behind",
            registry=registry,
        )
        self.key_mismatches = Counter(
            "streamseg_key_mismatches_total",
            "Single-event messages whose Kafka key is set and is not the event's customer_id "
            "(applied all the same; that customer's ordering is not guaranteed)",
            ["topic"], registry=registry,
        )
        self.outputs_lost = Counter(
            "streamseg_outputs_lost_total",
            "Outputs given up after their events were applied: records the broker refused for "
            "good (by topic), or a batch's segment step (topic 'none'); see docs/operations.md",
            ["topic"], registry=registry,
        )

    def set_segment_sizes(self, sizes: Mapping[int, int], live: Collection[int],
                          name_of: Callable[[int], str]) -> None:
        """Replace the segment-size gauge: every live segment, and retired ones still holding customers.

        A retired segment keeps its name (published memberships stay readable), and
        a newer segment may take the same name; once the retired one is empty it
        leaves the gauge, so dashboards do not show two segments of one name.
        """
        self.segment_size.clear()
        for sid, n in sorted(sizes.items()):
            if sid in live or n > 0:
                self.segment_size.labels(str(sid), name_of(sid)).set(n)
        for sid in live:
            if sid not in sizes:  # no customer has been assigned to it yet
                self.segment_size.labels(str(sid), name_of(sid)).set(0)


class DriftMetrics:
    """The latest drift report's figures per window (see streamseg/drift/)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
            return Gauge(f"streamseg_drift_{name}", doc, labels, registry=registry)

        self.reports = Counter("streamseg_drift_reports_total", "Drift reports published",
                               ["window"], registry=registry)
        self.customers = gauge("window_customers", "Customer updates in the latest window",
                               ["window"])
        self.psi = gauge("psi", "Segment-share PSI, latest window vs the one before", ["window"])
        self.js = gauge("js_distance", "Segment-share Jensen-Shannon distance (base 2)", ["window"])
        self.composition = gauge("composition_shift", "Segment-share total variation distance",
                                 ["window"])
        self.emerging = gauge("emerging_share", "Share of customers far from every centre",
                              ["window"])
        self.shrink = gauge("population_shrink", "Share of the reference window's active "
                            "customers missing from the latest window", ["window"])
        self.population = gauge("population_change", "Customers active in the latest window / "
                                "in its reference - 1 (each counted once per slot)", ["window"])
        self.migration_rate = gauge("migration_rate", "Moved customers / customer updates",
                                    ["window"])
        self.migrations = gauge("migrations", "Customers moved between segments in the latest "
                                "window", ["window", "from_segment", "to_segment"])
        self.share = gauge("segment_share", "A segment's share of the latest window's customer "
                           "updates", ["window", "segment"])
        self.forecast = gauge("forecast_share", "A segment's share of the active customers "
                              "'horizon' windows ahead (Markov forecast; horizon 0: the latest "
                              "window's)",
                              ["window", "segment", "horizon"])
        self.centroid = gauge("centroid_shift", "Distance a segment centre moved over the window "
                              "(standardized units)", ["window", "segment"])
        self.feature_psi = gauge("feature_psi", "PSI of a model input's distribution",
                                 ["window", "feature"])
        self.high_risk = gauge("high_risk_share", "Share of the latest window's scored customer "
                               "updates in the highest churn-risk band", ["window"])
        self.segment_risk = gauge("segment_churn_risk", "A segment's mean churn risk in the "
                                  "latest window", ["window", "segment"])
        self.entered_high = gauge("entered_high_risk", "Customers whose risk band moved into the "
                                  "highest band in the latest window, by segment",
                                  ["window", "segment"])
        self.alert = gauge("alert", "1 while the latest window crosses the alert's threshold",
                           ["window", "alert"])
        self.threshold = gauge("threshold", "Alert thresholds in force", ["alert"])
        self._live: dict[tuple[int, str], set[tuple[str, ...]]] = {}  # (gauge, window) -> labels

    def set_thresholds(self, thresholds: Thresholds) -> None:
        for alert, level in thresholds.by_alert().items():
            self.threshold.labels(alert).set(level)

    def record(self, r: DriftReport) -> None:
        """Expose one report; series of the window's previous report are replaced."""
        w = r.window
        self.reports.labels(w).inc()
        self.customers.labels(w).set(r.customers)
        self.psi.labels(w).set(r.psi)
        self.js.labels(w).set(r.js_distance)
        self.composition.labels(w).set(r.composition_shift)
        self.emerging.labels(w).set(r.emerging_share)
        self.shrink.labels(w).set(r.population_shrink)
        self.population.labels(w).set(r.active_customers / r.reference_active_customers - 1
                                      if r.reference_active_customers else 0.0)
        self.migration_rate.labels(w).set(r.migration_rate)
        self._replace(self.migrations, w, {(str(m.from_segment), str(m.to_segment)): m.customers
                                           for m in r.migrations})
        self._replace(self.share, w, {(str(s.segment_id),): s.share for s in r.segments})
        self._replace(self.forecast, w, {
            **{(str(s.segment_id), "0"): s.active_share for s in r.segments if r.forecast},
            **{(str(f.segment_id), str(h)): v for f in r.forecast
               for h, v in ((1, f.one_window_ahead), (2, f.two_windows_ahead))}})
        self._replace(self.centroid, w, {(sid,): v for sid, v in r.centroid_shift.items()})
        self._replace(self.feature_psi, w, {(f,): v for f, v in r.feature_psi.items()})
        if r.high_risk_share is not None:
            self.high_risk.labels(w).set(r.high_risk_share)
        self._replace(self.segment_risk, w, {(str(s.segment_id),): s.mean_churn_risk
                                             for s in r.risk if s.scored})
        self._replace(self.entered_high, w, {(str(s.segment_id),): s.entered_high_risk
                                             for s in r.risk})
        firing = {a.alert for a in r.alerts}
        for name in ALERT_NAMES:
            self.alert.labels(w, name).set(1.0 if name in firing else 0.0)

    def _replace(self, gauge: Gauge, window: str, values: dict[tuple[str, ...], float]) -> None:
        """Set ``window``'s series to ``values``, removing the window's stale ones."""
        live = self._live.setdefault((id(gauge), window), set())
        for rest in live - set(values):
            gauge.remove(window, *rest)
        for rest, v in values.items():
            gauge.labels(window, *rest).set(v)
        live.clear()
        live.update(values)


API_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


class ApiMetrics:
    """The HTTP API's own metrics; ``route`` is the route pattern, so labels stay bounded."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "streamseg_api_requests_total", "HTTP API requests by route pattern, method and status",
            ["route", "method", "status"], registry=registry,
        )
        self.duration = Histogram(
            "streamseg_api_request_duration_seconds", "Server-side time to answer an API request",
            ["route"], buckets=API_LATENCY_BUCKETS, registry=registry,
        )
        self.erasures = Counter(
            "streamseg_erasures_total", "Customer erasures served by this worker's API",
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request; label children are cached (``labels()`` costs more than the rest)."""
        key = (route, method, str(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(*key), self.duration.labels(route))
        children[0].inc()
        children[1].observe(seconds)


_gc_watch: list[Metrics] = []  # the worker's metrics; a process has one gc callback at most


def watch_gc(metrics: Metrics) -> None:
    """Record every garbage-collection pause of this process in ``metrics.gc_pause``."""
    if not _gc_watch:
        started = [0.0]

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            elif _gc_watch:
                _gc_watch[0].gc_pause.labels(str(info["generation"])).observe(
                    time.perf_counter() - started[0])

        gc.callbacks.append(callback)
    _gc_watch[:] = [metrics]


def metrics_table() -> str:
    """docs/operations.md's metrics reference, generated from the classes above (a test keeps them equal).

    >>> metrics_table().splitlines()[2].startswith("| `streamseg_")
    True
    """
    registry = CollectorRegistry()
    found: list[Counter | Gauge | Histogram] = []

    def walk(obj: object) -> None:
        for value in vars(obj).values():
            if isinstance(value, Counter | Gauge | Histogram):
                found.append(value)
            elif isinstance(value, DriftMetrics):
                walk(value)

    walk(Metrics(registry))
    walk(ApiMetrics(registry))
    rows = ["| metric | type | labels | help |", "|---|---|---|---|"]
    for family, labels in sorted(((next(iter(m.describe())), m._labelnames) for m in found),
                                 key=lambda pair: pair[0].name):
        name = family.name + ("_total" if family.type == "counter" else "")
        cells = ", ".join(f"`{label}`" for label in labels) or "-"
        rows.append(f"| `{name}` | {family.type} | {cells} | {family.documentation} |")
    return "\n".join(rows)
