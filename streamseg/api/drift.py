"""``GET /v1/drift``'s body: each window's latest drift reports and its segments' recent shares.

Pure functions over the reports the workers keep in Redis (newest first, see
``RedisFeatureStore.keep_drift_reports``), so they are tested without a server.
A share series point sums every worker's report for one window end: each
worker reports on its own partitions.

>>> from streamseg.drift.report import SegmentShare
>>> def report(worker, end, counts):
...     return _example(worker, end, [SegmentShare(segment_id=s, name=f"S{s}", customers=n,
...         share=0.0, reference_share=0.0, active_customers=n) for s, n in counts.items()])
>>> kept = {"1h": [report("a", "T2", {0: 3, 1: 1}), report("b", "T1", {0: 1, 1: 1}),
...                report("a", "T1", {0: 1, 1: 3})]}
>>> body = drift_body(kept)
>>> [(r["worker"], r["window_end"]) for r in body["windows"][0]["latest"]]
[('a', 'T2'), ('b', 'T1')]
>>> series = body["windows"][0]["shares"]
>>> series["window_ends"], [s["active_share"] for s in series["segments"]]
(['T1', 'T2'], [[0.333333, 0.75], [0.666667, 0.25]])
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from streamseg.drift.report import DriftReport, SegmentShare

log = logging.getLogger(__name__)


def drift_body(kept: Mapping[str, Sequence[bytes]]) -> dict[str, Any]:
    """Per window (in the given order): the newest report of each worker, newest first, and
    every segment's active share at each kept window end, oldest first."""
    windows = []
    for window, raws in kept.items():
        reports = _parse(raws)
        windows.append({"window": window, "kept": len(reports),
                        "latest": [r.model_dump(by_alias=True) for r in _latest_per_worker(reports)],
                        "shares": share_series(reports)})
    return {"windows": windows}


def share_series(reports: Sequence[DriftReport]) -> dict[str, Any]:
    """Each segment's ``active_share`` per window end (all workers' reports summed; null where
    the segment had no active customers)."""
    by_end: dict[str, list[DriftReport]] = defaultdict(list)
    for r in reports:
        by_end[r.window_end].append(r)
    ends = sorted(by_end)
    names: dict[int, str] = {}
    points: list[dict[int, float]] = []
    for end in ends:
        counts: dict[int, int] = defaultdict(int)
        for r in by_end[end]:
            for s in r.segments:
                counts[s.segment_id] += s.active_customers
                names.setdefault(s.segment_id, s.name)  # the newest report's name comes first
        total = sum(counts.values())
        points.append({sid: round(n / total, 6) for sid, n in counts.items()} if total else {})
    return {"window_ends": ends,
            "segments": [{"segment_id": sid, "name": names[sid],
                          "active_share": [p.get(sid) for p in points]} for sid in sorted(names)]}


def _latest_per_worker(reports: Sequence[DriftReport]) -> list[DriftReport]:
    """The newest report of each worker, newest window end first."""
    newest: dict[str, DriftReport] = {}
    for r in reports:
        if r.worker not in newest or r.window_end > newest[r.worker].window_end:
            newest[r.worker] = r
    return sorted(newest.values(), key=lambda r: r.window_end, reverse=True)


def _parse(raws: Sequence[bytes]) -> list[DriftReport]:
    out = []
    for raw in raws:
        try:
            out.append(DriftReport.model_validate_json(raw))
        except ValidationError as exc:  # a report of another version: leave it out
            log.debug("unreadable drift report left out: %s", exc)
    return out


def _example(worker: str, end: str, segments: list[SegmentShare]) -> bytes:
    """A minimal report (for the examples and tests)."""
    return DriftReport(
        worker=worker, window="1h", window_seconds=3600, clock="event", window_start="T0",
        window_end=end, reference_start="T0", reference_end="T0", customers=0,
        reference_customers=0, segments=segments, composition_shift=0.0, psi=0.0, js_distance=0.0,
        model_version=1, reference_model_version=1, centroid_shift={}, migrations=[],
        first_assignments=0, migration_rate=0.0, emerging_distance=0.0, emerging_share=0.0,
        reference_emerging_share=0.0, feature_psi={}, alerts=[], generated_at="T0").to_bytes()
