"""Generate the Grafana dashboards in grafana/dashboards/ (dashboards as code).

    python grafana/generate.py          # rewrite the JSON files
    python grafana/generate.py --check  # exit 1 if a file is not what this script writes

Every panel's PromQL lives here; tests/integration/test_prometheus_live.py runs each
expression against a real Prometheus scraping a real worker and fails on empty results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
INST = 'instance=~"$instance"'  # every panel follows the instance picker
RATE = "[$__rate_interval]"

Target = tuple[str, str]  # expr, legend


def panel(title: str, targets: list[Target], *, unit: str = "short", kind: str = "timeseries",
          w: int = 12, h: int = 8, table: bool = False, description: str = "") -> dict[str, Any]:
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(65 + i), "datasource": DATASOURCE, "expr": expr,
                     "legendFormat": legend, "instant": table, "format": "table" if table else
                     "time_series"} for i, (expr, legend) in enumerate(targets)],
    }


def quantiles(metric: str) -> list[Target]:
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{INST}}}{RATE})))", f"p{p}")
            for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))]


def overview() -> list[dict[str, Any]]:
    return [
        panel("Events/s by topic and outcome",
              [(f"sum by (topic, outcome) (rate(streamseg_events_total{{{INST}}}{RATE}))",
                "{{topic}} {{outcome}}")], unit="ops"),
        panel("Consumer lag (messages) by topic",
              [(f"sum by (topic) (streamseg_consumer_lag_messages{{{INST}}})", "{{topic}}")],
              description="partition end offset - committed offset, summed over partitions"),
        panel("Processing latency (Kafka timestamp to batch done)",
              quantiles("streamseg_processing_latency_seconds"), unit="s"),
        panel("Dead letters/s by reason",
              [(f"sum by (reason) (rate(streamseg_dead_letters_total{{{INST}}}{RATE}))", "{{reason}}")],
              unit="ops"),
        panel("Dead letters since start by reason",
              [(f"sum by (reason) (streamseg_dead_letters_total{{{INST}}})", "{{reason}}")],
              kind="bargauge", w=8),
        panel("Batch duration", quantiles("streamseg_batch_duration_seconds"), unit="s", w=8),
        panel("Event-loop lag and GC pauses (p99)",
              [(f"histogram_quantile(0.99, sum by (le) (rate(streamseg_event_loop_lag_seconds_bucket"
                f"{{{INST}}}{RATE})))", "loop lag"),
               # a generation with no pause in the interval shows 0, not a gap (quantile of nothing
               # is NaN): with the young threshold at 10,000 a worker may go minutes without one
               (f"histogram_quantile(0.99, sum by (le, generation) (rate(streamseg_gc_pause_seconds_bucket"
                f"{{{INST}}}{RATE}))) >= 0 or sum by (generation) (rate(streamseg_gc_pause_seconds_count"
                f"{{{INST}}}{RATE})) * 0", "GC gen {{generation}}")], unit="s", w=8,
              description="Time the worker's event loop was blocked (a 100 ms probe firing late), "
                          "and Python's collection pauses (0: none in the interval): what holds up "
                          "batches and lookups"),
        panel("Workers up", [('up{job="streamseg", ' + INST + "}", "{{instance}}")], kind="stat", w=4),
        panel("Retries/s (Redis, Kafka)",
              [(f"sum(rate(streamseg_store_retries_total{{{INST}}}{RATE}))", "Redis"),
               (f"sum(rate(streamseg_publish_retries_total{{{INST}}}{RATE}))", "Kafka")],
              kind="stat", w=4, unit="ops"),
    ]


def segments() -> list[dict[str, Any]]:
    return [
        panel("Segment sizes", [(f"max by (segment, name) (streamseg_segment_customers{{{INST}}})",
                                 "{{segment}} {{name}}")], w=16),
        panel("Segments and names (now)",
              [(f"max by (segment, name) (streamseg_segment_customers{{{INST}}})", "")],
              kind="table", table=True, w=8),
        panel("Migrations between segments/s",
              [(f'sum by (from_segment, to_segment) (rate(streamseg_membership_changes_total{{{INST}, '
                f'from_segment!="none"}}{RATE}))', "{{from_segment}} → {{to_segment}}")], unit="ops"),
        panel("First assignments/s",
              [(f'sum(rate(streamseg_membership_changes_total{{{INST}, from_segment="none"}}{RATE}))',
                "first assignments")], unit="ops"),
        panel("Migration matrix, latest $window window",
              [(f'sum by (from_segment, to_segment) (streamseg_drift_migrations{{{INST}, '
                f'window="$window"}})', "")], kind="table", table=True, w=16),
        panel("Model version", [(f"max(streamseg_model_version{{{INST}}})", "version")],
              kind="stat", w=8),
        panel("High churn-risk share and its 1h rise",
              [(f"max(streamseg_value_high_risk_share{{{INST}}})", "high-risk share"),
               (f"max(streamseg_value_high_risk_share{{{INST}}} - "
                f"min_over_time(streamseg_value_high_risk_share{{{INST}}}[1h]))", "rise within 1h")],
              unit="percentunit", description="Customers in the highest churn-risk band (leader's "
              "sample); StreamsegHighRiskShareRising fires when the rise passes 5 points"),
        panel("Lifetime value and value at risk",
              [(f"max(streamseg_value_lifetime_value{{{INST}}})", "expected spend, horizon"),
               (f"max(streamseg_value_at_risk{{{INST}}})", "value at risk")],
              description="Reporting currency (docs/value.md); StreamsegValueAtRiskRising fires "
              "when the value at risk grows by over 20% within an hour"),
        panel("High-risk share of scored customers, $window windows",
              [(f'max(streamseg_drift_high_risk_share{{{INST}, window="$window"}})',
                "high-risk share")], unit="percentunit", w=8,
              description="Drift report: share of the window's scored customer updates in the "
              "highest churn-risk band; the high_risk_share alert fires on a rise of over 5 points"),
        panel("Mean churn risk by segment, $window windows",
              [(f'max by (segment) (streamseg_drift_segment_churn_risk{{{INST}, window="$window"}})',
                "{{segment}}")], unit="percentunit", w=8,
              description="Drift report: a segment's mean churn risk over the window's scored "
              "updates; the segment_churn_risk alert fires on a rise of over 0.10"),
        panel("Moved into the high-risk band by segment, $window windows",
              [(f'sum by (segment) (streamseg_drift_entered_high_risk{{{INST}, window="$window"}})',
                "{{segment}}")], w=8,
              description="Drift report: customers whose published risk band moved into the "
              "highest band in the window (the re-scoring sweep moves silent ones)"),
    ]


def drift() -> list[dict[str, Any]]:
    def by_window(metric: str) -> list[Target]:
        return [(f"max by (window) ({metric}{{{INST}}})", "{{window}}")]

    return [
        panel("Segment-share PSI", by_window("streamseg_drift_psi"), w=8,
              description="alert above streamseg_drift_threshold{alert='segment_psi'} (0.2)"),
        panel("Segment-share Jensen-Shannon distance", by_window("streamseg_drift_js_distance"), w=8),
        panel("Composition shift", by_window("streamseg_drift_composition_shift"),
              unit="percentunit", w=8, description="share of customers that would have to move; "
              "alert above 15% by default"),
        panel("Emerging share (far from every centre)", by_window("streamseg_drift_emerging_share"),
              unit="percentunit", w=8),
        panel("Centroid shift, $window window (standardized units)",
              [(f'max by (segment) (streamseg_drift_centroid_shift{{{INST}, window="$window"}})',
                "segment {{segment}}")], w=8),
        panel("Model inputs with the largest PSI, $window window",
              [(f'topk(5, max by (feature) (streamseg_drift_feature_psi{{{INST}, window="$window"}}))',
                "{{feature}}")], w=8),
        panel("Segment shares, $window window: now and the Markov forecast",
              [(f'max by (segment) (streamseg_drift_forecast_share{{{INST}, window="$window", '
                f'horizon="0"}})', "segment {{segment}} now"),
               (f'max by (segment) (streamseg_drift_forecast_share{{{INST}, window="$window", '
                f'horizon="1"}})', "segment {{segment}} next window"),
               (f'max by (segment) (streamseg_drift_forecast_share{{{INST}, window="$window", '
                f'horizon="2"}})', "segment {{segment}} in two windows")],
              unit="percentunit", w=12,
              description="each segment's share of the customers active in the latest window, "
              "and its Markov forecast one and two windows ahead: customers kept, moved and gone "
              "at the rates seen since the reference window (by recency), plus arrivals "
              "(docs/model.md: migration forecast)"),
        panel("Drift alerts per window (1 = firing)",
              [(f"max by (window, alert) (streamseg_drift_alert{{{INST}}})", "{{window}} {{alert}}")],
              kind="state-timeline", w=12),
        panel("Firing streamseg alerts (Prometheus)",
              [('count(ALERTS{alertstate="firing", alertname=~"Streamseg.*"}) or vector(0)',
                "firing")], kind="stat", w=4),
        panel("Migration rate", by_window("streamseg_drift_migration_rate"), unit="percentunit",
              w=4),
        panel("Customer updates per window", by_window("streamseg_drift_window_customers"), w=4),
    ]


def variables(with_window: bool) -> list[dict[str, Any]]:
    out = [{"name": "instance", "type": "query", "datasource": DATASOURCE, "includeAll": True,
            "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
            "query": {"query": 'label_values(up{job="streamseg"}, instance)', "refId": "instance"},
            "refresh": 2}]
    if with_window:
        out.append({"name": "window", "type": "query", "datasource": DATASOURCE,
                    "query": {"query": "label_values(streamseg_drift_psi, window)",
                              "refId": "window"}, "refresh": 2})
    return out


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], with_window: bool) -> dict[str, Any]:
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"], p["gridPos"] = i, {"x": x, "y": y, "w": w, "h": h}
        x, row_h = x + w, max(row_h, h)
    return {
        "uid": uid, "title": title, "tags": ["streamseg"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": variables(with_window)}, "panels": panels,
    }


DASHBOARDS = {
    "overview.json": lambda: dashboard("streamseg-overview", "streamseg / Overview", overview(), False),
    "segments.json": lambda: dashboard("streamseg-segments", "streamseg / Segments", segments(), True),
    "drift.json": lambda: dashboard("streamseg-drift", "streamseg / Drift", drift(), True),
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = OUT / name, render(build)
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards (run python grafana/generate.py): {', '.join(stale)}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
