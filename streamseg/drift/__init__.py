"""Drift of the segment mix and the model inputs, per sliding window (see :mod:`.monitor`)."""

from streamseg.drift.alerts import ALERT_NAMES, Thresholds, evaluate
from streamseg.drift.monitor import DriftConfig, DriftMonitor
from streamseg.drift.report import (
    SCHEMA,
    Alert,
    DriftReport,
    Migration,
    SegmentShare,
    ShareForecast,
)
from streamseg.drift.windows import parse_windows, window_name

__all__ = [
    "ALERT_NAMES",
    "SCHEMA",
    "Alert",
    "DriftConfig",
    "DriftMonitor",
    "DriftReport",
    "Migration",
    "SegmentShare",
    "ShareForecast",
    "Thresholds",
    "evaluate",
    "parse_windows",
    "window_name",
]
