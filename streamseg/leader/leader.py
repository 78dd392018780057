"""The leader's work: one global model from every worker's, kept true to current customers.

The Faust leader (or an in-process engine, its own leader) merges the workers'
local summaries into the next global :class:`SegmentModel` version, re-fits
its centres on a sample of current customers, computes segment profiles and
publishes the catalog. Every worker follows the result on the model topic
(:mod:`streamseg.segmenting.sync`); none but the leader runs this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import orjson

from streamseg.clock import EngineClock
from streamseg.features.registry import DAY_MS
from streamseg.features.store import FeatureStore
from streamseg.publish.publisher import OutRecord, Publisher
from streamseg.publish.records import CatalogEntry, now_iso
from streamseg.retry import Retrier
from streamseg.segmenting.assign import Assigner
from streamseg.segmenting.local import LocalLearner
from streamseg.segmenting.model import Lifecycle, LocalSummary, SegmentModel, merge
from streamseg.segmenting.naming import name_segments
from streamseg.segmenting.offload import ChildSample, LocalSample, SampleProcess, current_sample
from streamseg.segmenting.sync import GLOBAL
from streamseg.settings import Settings

#: a customer sample for the leader's re-fit and profiles (see streamseg.segmenting.offload)
CustomerSample = ChildSample | LocalSample
Proposal = tuple[SegmentModel, list[Lifecycle]]
log = logging.getLogger(__name__)


class Leader:
    """Merges, re-fits and catalogs the global model; publishes it for every worker.

    It proposes versions; the :class:`~streamseg.segmenting.assign.Assigner`
    adopts them (its model is the one merged into and re-fitted). Publishing
    goes through the engine's publisher and retry policy.

    >>> from prometheus_client import CollectorRegistry
    >>> from streamseg.drift import DriftConfig, DriftMonitor
    >>> from streamseg.features.registry import MODEL_FEATURES
    >>> from streamseg.metrics import Metrics
    >>> cfg = Settings()
    >>> drift = DriftMonitor(DriftConfig.from_settings(cfg), MODEL_FEATURES)
    >>> assigner = Assigner(cfg.segment_margin, Metrics(CollectorRegistry()), drift, lambda m: None)
    >>> leader = Leader(cfg, None, None, None, assigner, None)  # type: ignore[arg-type]
    >>> leader.propose([]) is None  # no worker has summarised a model yet: nothing to merge
    True
    """

    def __init__(self, settings: Settings, store: FeatureStore, publisher: Publisher,
                 retry: Retrier, assigner: Assigner, clock: EngineClock) -> None:
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.retry = retry
        self.assigner = assigner
        self.clock = clock
        #: where samples are computed (a worker sets a child process); None: threads
        self.sampler: SampleProcess | None = None
        self._merged_local: dict[str, int] = {}  # worker -> local version last merged
        self._catalog_out: list[CatalogEntry] = []  # in-process merges: published after a batch
        self._merging = ""  # the workers in the last merge, to log when that changes
        self._leading = asyncio.Lock()  # merges and refits never race to the same version

    # -- as the Faust leader (timers) -----------------------------------------------
    async def lead(self, locals_: Mapping[str, LocalSummary]) -> None:
        """Merge fresh local models (the model topic's ``local:`` records) into the next version."""
        horizon = 3 * self.settings.model_sync_s + 10.0
        async with self._leading:
            fresh = [s for s in locals_.values() if time.time() - s.ts <= horizon]
            usable = self.mergeable(sorted(fresh, key=lambda s: s.worker))
            names = ", ".join(s.worker for s in usable)
            if usable and names != self._merging:  # a worker joined or left the merge
                log.info("merging the models of %d workers: %s", len(usable), names)
                self._merging = names
            await self._publish(self.propose(usable), f"{len(usable)} workers ({names})")

    async def refresh_catalog(self, *, reseed: bool = False) -> None:
        """Re-fit the model on current customers, recompute profiles, republish.

        ``reseed``: the re-fit starts from k-means++ seeds on the sample, not from the
        model's centres (the first model of a history: see :mod:`streamseg.leader.pace`).
        """
        sample = await self.sample_customers()  # read and derived once, for both
        sample.reseed = reseed
        try:
            async with self._leading:
                await self._publish(await self.refine(sample), "a sample of current customers")
            await self.publish_catalog(await self.refresh_profiles(sample))
        finally:
            await sample.release()

    async def _publish(self, proposal: Proposal | None, source: str) -> None:
        """A new global version to the model topic, adopted here, and its catalog."""
        if proposal is None:
            return
        model, events = proposal
        await self.publisher.publish(
            [(self.settings.topic_model, GLOBAL, orjson.dumps(model.to_json()))])
        self.assigner.adopt(model)
        log.info("published global model v%d from %s: %s", model.version, source,
                 ", ".join(f"{e.segment_id} {e.status}" for e in events) or "centres moved")
        await self.publish_catalog(self.catalog(model, events))

    # -- in process (no Faust leader) ------------------------------------------------
    def lead_locally(self, local: LocalLearner) -> None:
        """This engine is its own leader: merge its clusterer every ``model_sync_events``.

        The catalog entries wait for :meth:`flush_catalog` (after the batch's outputs).
        """
        if not local.ready or (self.assigner.model is not None
                               and local.learned_since_sync < self.settings.model_sync_events):
            return
        summary = local.summary("local")
        proposal = self.propose([summary]) if summary else None
        if proposal and self.assigner.adopt(proposal[0]):
            self._catalog_out += self.catalog(*proposal)

    async def flush_catalog(self) -> None:
        """Publish the catalog entries of versions merged in process since the last call."""
        if self._catalog_out:
            entries, self._catalog_out = self._catalog_out, []
            await self.publish_catalog(entries)

    # -- merging -----------------------------------------------------------------------
    def propose(self, summaries: Sequence[LocalSummary]) -> Proposal | None:
        """Merge workers' summaries into the next global model (None: nothing new).

        Only :meth:`mergeable` summaries count (a summary from before a refit
        would undo it).
        """
        summaries = self.mergeable(summaries)
        if not summaries:
            return None
        self.merged(summaries)
        current = self.assigner.model
        k = max(len(s.centers) for s in summaries)
        mean, var, centers, weights = merge(summaries, k, current, seed=self.settings.seed)
        if current is None:
            nxt = SegmentModel.first(summaries[0].features, mean, var, centers, weights)
            events = [Lifecycle(sid, "born") for sid in nxt.ids]
        else:
            nxt, events = current.evolve(mean, var, centers, weights,
                                         max_move=self.settings.identity_max_move)
            if nxt is current:
                return None
        old = current.names if current else {}
        nxt.names = {**old, **name_segments(nxt.centers_by_id(), previous=old)}  # retired keep theirs
        return nxt, events

    def mergeable(self, summaries: Sequence[LocalSummary]) -> list[LocalSummary]:
        """The summaries worth merging into the next version.

        Summaries aligned with the current global model (their clusterer took its
        centres) when there are any; else those of clusterers that cannot align
        (density-based ones), but only once per local version, so an unchanged
        local model does not undo the leader's refit again and again.
        """
        model = self.assigner.model
        if model is None:
            return list(summaries)
        aligned = [s for s in summaries if s.base_version >= model.version]
        if aligned:
            return aligned
        out = [s for s in summaries if s.base_version == 0
               and self._merged_local.get(s.worker) != s.local_version]
        return out

    def merged(self, summaries: Sequence[LocalSummary]) -> None:
        """Remember which local versions went into the global model."""
        for s in summaries:
            self._merged_local[s.worker] = s.local_version

    # -- re-fitting and profiles on a sample -------------------------------------------
    async def sample_customers(self) -> CustomerSample:
        """Up to ``profile_sample`` customers' states with their derived features.

        Customers silent for longer than ``retention_days`` in the engine's clock
        are left out (on a replay, Redis' wall-clock TTL has not removed them yet).

        Shared by the re-fit and the profiles, so one refresh reads and
        derives each customer once. Deriving a 20k sample costs ~0.3 s of CPU:
        with a :attr:`sampler` (the worker's) the sample is read, derived and
        computed on in a child process (see :mod:`streamseg.segmenting.offload`);
        without one, in a thread, the read chunked so batches go on meanwhile.
        """
        now = self.clock.now_ms()
        # retention in the engine's clock: Redis expires customers in wall time, which on a
        # replay (event clock) keeps customers silent for longer than the retention in view
        cutoff = now - self.settings.retention_days * DAY_MS
        if self.sampler is not None:
            return await self.sampler.sample(self.settings.profile_sample, now, cutoff)
        states = await self.store.sample_states(self.settings.profile_sample)
        return LocalSample(*await asyncio.to_thread(current_sample, states, now, cutoff))

    @contextlib.asynccontextmanager
    async def _own_sample(self) -> AsyncIterator[CustomerSample]:
        """A sample read for one call and freed after it, not held until the next refresh."""
        sample = await self.sample_customers()
        try:
            yield sample
        finally:
            await sample.release()

    async def refine(self, sample: CustomerSample | None = None) -> Proposal | None:
        """Re-fit the global centres on a sample of current customers.

        The rows and the k-means re-fit are built off the event loop (where the sample is).
        """
        model = self.assigner.model
        if model is None:
            return None
        if sample is None:
            async with self._own_sample() as own:
                return await self.refine(own)
        if len(sample) < 2 * len(model.ids):
            return None
        centers, weights = await sample.fit(model, self.settings.seed)
        if self.assigner.model is not model:
            return None  # a newer version arrived meanwhile; re-fit it next time
        nxt, events = model.evolve(model.mean, model.var, centers, weights,
                                   max_move=self.settings.identity_max_move)
        if nxt is model:
            return None
        nxt.names = {**model.names, **name_segments(nxt.centers_by_id(), previous=model.names)}
        return nxt, events

    async def refresh_profiles(self, sample: CustomerSample | None = None) -> list[CatalogEntry]:
        """Recompute profiles from a sample of customers; the catalog entries to republish."""
        if self.assigner.model is None:
            return []
        if sample is None:
            async with self._own_sample() as own:
                return await self.refresh_profiles(own)
        sizes = await self.store.segment_sizes()
        model = self.assigner.model
        live = {sid: self.assigner.name_of(sid) for sid in model.ids}
        # a 20k sample takes ~0.1 s of list building and numpy: off the loop, where the sample is
        profiles = await sample.profiles(live, sizes, model.version)
        if not profiles:  # no member in the sample (before the first assignments): keep what was
            return []
        self.assigner.set_profiles(profiles)
        return self.catalog(model, [])

    # -- the catalog -------------------------------------------------------------------
    def catalog(self, model: SegmentModel, events: Sequence[Lifecycle]) -> list[CatalogEntry]:
        """Catalog entries for a model version: every live segment plus what ended."""
        by_id = {e.segment_id: e for e in events}
        name_of = self.assigner.name_of
        ts = now_iso()
        out = []
        for sid in model.ids:
            e = by_id.get(sid)
            prof = self.assigner.profiles.get(sid)
            if prof is not None:
                prof = prof.model_copy(update={"name": name_of(sid), "model_version": model.version})
            out.append(CatalogEntry(
                segment_id=sid, status=e.status if e else "active",  # type: ignore[arg-type]
                model_version=model.version, name=name_of(sid), profile=prof,
                related=list(e.related) if e else [], updated_ts=ts))
        for e in events:
            if e.status in ("merged", "retired"):
                out.append(CatalogEntry(
                    segment_id=e.segment_id, status=e.status,  # type: ignore[arg-type]
                    model_version=model.version,
                    name=name_of(e.segment_id),
                    profile=None, related=list(e.related), updated_ts=ts))
        return out

    async def publish_catalog(self, entries: Sequence[CatalogEntry]) -> None:
        """Catalog entries to the compacted segments topic, then to Redis (for the API)."""
        if not entries:
            return
        records: list[OutRecord] = [(self.settings.topic_segments, str(e.segment_id).encode(),
                                     e.to_bytes()) for e in entries]
        await self.retry(lambda: self.publisher.publish(records), "publishing the catalog")
        await self.retry(lambda: self.store.write_catalog({e.segment_id: e.to_bytes() for e in entries}),
                         "writing the catalog")
