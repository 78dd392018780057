"""The model's timers on a worker: follow the model topic, share the local model, and on the
Faust leader merge models and refresh the catalog (see :class:`~streamseg.segmenting.sync.ModelSync`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from streamseg.engine import Engine
    from streamseg.segmenting.sync import ModelSync
    from streamseg.settings import Settings
    from streamseg.ticks import Ticks


def register(app: faust.App, sync: ModelSync, engine: Engine, settings: Settings, ticks: Ticks) -> None:
    """Register the model topic's task, the local model's publication and the leader's
    merge, catalog and held-back timers on ``app``."""

    @app.task
    async def follow_model_topic() -> None:
        # one long read, not a tick: an error other than a refusal ends it, as Faust's tasks do
        try:
            await sync.run()
        except Exception as exc:
            if not ticks.refused(exc):
                raise

    @ticks.every(app, settings.model_sync_s, "publishing the local model")
    async def publish_local_model() -> None:
        await sync.publish_local()

    @ticks.every(app, settings.model_sync_s, "merging models", on_leader=True)
    async def merge_models() -> None:
        await engine.leader.lead(sync.locals)

    @ticks.every(app, settings.catalog_refresh_s, "refreshing the catalog", on_leader=True)
    async def refresh_catalog() -> None:
        await engine.leader.refresh_catalog()

    # held-back customers wait for a model: assign them at least as often as models change
    @ticks.every(app, min(settings.held_back_every_s, settings.model_sync_s),
                 "assigning held-back customers")
    async def assign_held_back() -> None:
        await engine.flush_pending()

    # profiles change only with a model: no point reading them more often than models sync
    @ticks.every(app, max(settings.profiles_every_s, settings.model_sync_s), "loading profiles")
    async def load_profiles() -> None:
        await sync.load_profiles()
