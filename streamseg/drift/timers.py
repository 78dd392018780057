"""The worker's drift timer: close the windows due, publish their reports, log their alerts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from streamseg.engine import Engine
    from streamseg.settings import Settings
    from streamseg.ticks import Ticks

log = logging.getLogger(__name__)


def register(app: faust.App, engine: Engine, settings: Settings, ticks: Ticks) -> None:
    """Register the drift timer on ``app`` (every worker: each reports on its own partitions)."""

    @app.timer(settings.drift_interval_s)
    async def close_drift_windows() -> None:
        reports = engine.drift_reports()
        if not reports:
            return
        # reports are derived data (also in /metrics): a failed publish is logged, alerts still are
        await ticks.attempt(
            f"publishing {len(reports)} drift report(s)",
            lambda: engine.publisher.publish(
                [(settings.topic_drift, r.window.encode(), r.to_bytes()) for r in reports]),
            timer="close_drift_windows")
        for r in reports:
            if r.alerts:
                log.warning("drift alert (%s window ending %s): %s", r.window, r.window_end,
                            "; ".join(a.detail for a in r.alerts))
