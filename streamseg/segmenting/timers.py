"""The model's timers on a worker: follow the model topic, share the local model, and on the
Faust leader merge models and refresh the catalog (see :class:`~streamseg.segmenting.sync.ModelSync`).

While the engine reads history the leader's timers stand aside: the same work runs at the
history's event-time steps instead (:func:`history_step`, :mod:`streamseg.leader.pace`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from streamseg import rescore

if TYPE_CHECKING:
    import faust

    from streamseg.engine import Engine
    from streamseg.segmenting.sync import ModelSync
    from streamseg.settings import Settings
    from streamseg.ticks import Ticks


def register(app: faust.App, sync: ModelSync, engine: Engine, settings: Settings, ticks: Ticks) -> None:
    """Register the model topic's task, the local model's publication and the leader's
    merge, catalog and held-back timers on ``app``, and the leader's steps of history."""
    engine.history_step = history_step(app, engine, settings, ticks)

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

    refreshing = asyncio.Lock()  # the catalog timer and the history's last step: one sample at a time

    # on every worker, so each one's pace (and streamseg_history_pending) leaves the history;
    # only the leader's step does any work (:func:`history_step`)
    @ticks.every(app, settings.model_sync_s, "ending history")
    async def end_history() -> None:
        # the steps make and re-fit the model, the last one once the history is drained (so
        # history shorter than a step gets one too)
        if engine.pace.ending and engine.pace.drained() and engine.history_step is not None:
            async with refreshing, engine.lock:
                await engine.history_step()

    @ticks.every(app, settings.model_sync_s, "merging models", on_leader=True)
    async def merge_models() -> None:
        # reading history: no merge (the workers' clusterers hold the order batches arrived in,
        # and how far they got by the wall clock); its steps make the model (end_history)
        if engine.pace.ending:
            return
        # after a paced history, once live events came; or to make a first model at all (a
        # history with fewer customers than the steps' first fit needs gets it from a merge)
        if engine.pace.merging or engine.assigner.model is None:
            await engine.leader.lead(sync.locals)

    @ticks.every(app, settings.catalog_refresh_s, "refreshing the catalog", on_leader=True)
    async def refresh_catalog() -> None:
        if engine.pace.aside:
            return
        async with refreshing:
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


def history_step(app: faust.App, engine: Engine, settings: Settings,
                 ticks: Ticks) -> Callable[[], Awaitable[None]]:
    """The leader's work at one event-time step of history, called by the engine with its lock
    held: a re-fit on the current customers (the first model, fitted on them alone, if there is
    none yet) and the catalog, and a re-scoring sweep; each failure logged and counted (as a
    timer tick's) without stopping the next.

    Steps never merge: the online clusterers learn in the order batches happen to arrive in,
    which differs between two runs of the same history, and how far they got by a step depends
    on the wall clock (their warm-up may end on a timer), while a fit on every current customer
    depends only on the history. So the first model comes from k-means++ seeds on the sample
    (:meth:`~streamseg.leader.Leader.first_fit`), later ones from the previous step's centres
    (never reseeded once ids are in use: that would reshuffle them).
    """

    async def step() -> None:
        if not app.is_leader():
            return
        await ticks.attempt("refreshing the catalog",
                            lambda: engine.leader.refresh_catalog(first=True, rescale=True),
                            timer="history_step")
        await ticks.attempt("re-scoring sweep", lambda: rescore.sweep_held(engine, settings),
                            timer="history_step")

    return step
