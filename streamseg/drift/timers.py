"""The worker's drift timer: close the windows due, publish and keep their reports, log alerts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from streamseg.engine import Engine
    from streamseg.features.store import RedisFeatureStore
    from streamseg.settings import Settings
    from streamseg.ticks import Ticks

log = logging.getLogger(__name__)
#: Drift reports kept in Redis per window length (all workers' together), for ``GET /v1/drift``.
DRIFT_KEPT = 24


def register(app: faust.App, engine: Engine, settings: Settings, ticks: Ticks,
             store: RedisFeatureStore) -> None:
    """Register the drift timer on ``app`` (every worker: each reports on its own partitions).

    Reports go to the drift topic and, the latest :data:`DRIFT_KEPT` per window, to
    ``store`` for ``GET /v1/drift``.
    """

    @app.timer(settings.drift_interval_s)
    async def close_drift_windows() -> None:
        reports = await engine.drift_reports_paced()
        if not reports:
            return
        # reports are derived data (also in /metrics): a failed publish is logged, alerts still are
        await ticks.attempt(
            f"publishing {len(reports)} drift report(s)",
            lambda: engine.publisher.publish(
                [(settings.topic_drift, r.window.encode(), r.to_bytes()) for r in reports]),
            timer="close_drift_windows")
        await ticks.attempt(
            f"keeping {len(reports)} drift report(s) in Redis",
            lambda: store.keep_drift_reports([(r.window, r.to_bytes()) for r in reports],
                                            DRIFT_KEPT),
            timer="close_drift_windows")
        for r in reports:
            if r.alerts:
                log.warning("drift alert (%s window ending %s): %s", r.window, r.window_end,
                            "; ".join(a.detail for a in r.alerts))
