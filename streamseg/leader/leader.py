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
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import numpy as np
import orjson

from streamseg.clock import EngineClock
from streamseg.features.registry import DAY_MS
from streamseg.features.store import FeatureStore
from streamseg.leader.value import LeaderValue
from streamseg.metrics import Metrics
from streamseg.publish.publisher import OutRecord, Publisher
from streamseg.publish.records import (
    CatalogEntry,
    KSelection,
    SegmentValidation,
    SegmentValue,
    now_iso,
)
from streamseg.retry import Retrier
from streamseg.segmenting.assign import Assigner
from streamseg.segmenting.choose_k import KChooser, KRule
from streamseg.segmenting.local import LocalLearner
from streamseg.segmenting.model import (
    MIN_MATERIAL_MOVE,
    Lifecycle,
    LocalSummary,
    SegmentModel,
    merge,
)
from streamseg.segmenting.offload import ChildSample, LocalSample, SampleProcess, current_sample
from streamseg.segmenting.sync import GLOBAL
from streamseg.segmenting.validation import catalog_validation
from streamseg.settings import Settings
from streamseg.value.scorer import ValueScorer

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
                 retry: Retrier, assigner: Assigner, clock: EngineClock, *,
                 value: ValueScorer | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        #: the customer-value model: fitted and measured per segment here, scored with everywhere
        self.values = LeaderValue(settings, store, publisher, retry, clock,
                                  value or ValueScorer.from_settings(settings), metrics)
        self.store = store
        self.publisher = publisher
        self.retry = retry
        self.assigner = assigner
        self.clock = clock
        #: where samples are computed (a worker sets a child process); None: threads
        self.sampler: SampleProcess | None = None
        #: STREAMSEG_N_SEGMENTS=auto: the evidence for changing k (see choose_k); None: k is fixed
        self.k_chooser = KChooser(KRule.from_settings(settings)) if settings.segments_auto else None
        self._merged_local: dict[str, int] = {}  # worker -> local version last merged
        self._catalog_out: list[CatalogEntry] = []  # in-process merges: published after a batch
        self._merging = ""  # the workers in the last merge, to log when that changes
        self._leading = asyncio.Lock()  # merges and refits never race to the same version
        #: the version this leader replaced with the current one (validation's stability)
        self.previous: SegmentModel | None = None
        self.validation: dict[int, SegmentValidation] = {}  # latest measurement, by segment

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

    async def refresh_catalog(self, *, first: bool = False, rescale: bool = False) -> None:
        """Re-fit the model on current customers, recompute profiles, republish.

        ``first``: with no model yet, make the first one from the sample alone
        (:meth:`first_fit`; a step of history: see :mod:`streamseg.leader.pace`).
        ``rescale``: it re-fits in the sample's own scale (:meth:`refine`).
        """
        sample = await self.sample_customers()  # read and derived once, for both
        try:
            async with self._leading:
                fitted = await (self.first_fit(sample) if first and self.assigner.model is None
                                else self.refine(sample, rescale=rescale))
                await self._publish(fitted, "a sample of current customers")
            self.values.refit_soon(lambda: self._sample_with(self.values.sampler),
                                   self.assigner.model)
            await self.values.measure(sample, self.assigner.model)
            await self.publish_catalog(await self.refresh_profiles(sample))
            async with self._leading:  # a name moved with the segments' customer value
                renamed = self.values.renamed(self.assigner.model, self.assigner.profiles)
                await self._publish((renamed, []) if renamed else None, "new segment names")
        finally:
            await sample.release()

    @property
    def value(self) -> ValueScorer:
        """The customer-value model this process scores with."""
        return self.values.scorer

    async def _publish(self, proposal: Proposal | None, source: str) -> None:
        """A new global version to the model topic, adopted here, and its catalog."""
        if proposal is None:
            return
        model, events = proposal
        await self.publisher.publish(
            [(self.settings.topic_model, GLOBAL, orjson.dumps(model.to_json()))])
        self._adopt(model)
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
        if proposal and self._adopt(proposal[0]):
            self._catalog_out += self.catalog(*proposal)

    def _adopt(self, model: SegmentModel) -> bool:
        """Assign with ``model`` from now on, remembering the version it replaces."""
        before = self.assigner.model
        adopted = self.assigner.adopt(model)
        if adopted:
            self.previous = before
        return adopted

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
        nxt.names = {**old, **self.values.names(nxt, old, self.assigner.profiles)}  # retired keep theirs
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
        """Up to ``profile_sample`` customers' states with their derived features, without
        those silent for longer than ``retention_days`` in the engine's clock (on a replay,
        Redis' wall-clock TTL has not removed them yet). Shared by the re-fit and the
        profiles: one refresh reads and derives each customer once (~0.3 s of CPU for 20k),
        in the :attr:`sampler`'s child process (:mod:`streamseg.segmenting.offload`) or,
        without one, in a thread, the read chunked so batches go on meanwhile.
        """
        return await self._sample_with(self.sampler)

    async def _sample_with(self, sampler: SampleProcess | None) -> CustomerSample:
        """:meth:`sample_customers` in ``sampler``'s child (None: in this process)."""
        now = self.clock.now_ms()
        # retention in the engine's clock: Redis expires customers in wall time, which on a
        # replay (event clock) keeps customers silent for longer than the retention in view
        cutoff = now - self.settings.retention_days * DAY_MS
        active = self.settings.model_active_days  # the part the segments are fitted on
        if sampler is not None:
            return await sampler.sample(self.settings.profile_sample, now, cutoff, active)
        states = await self.store.sample_states(self.settings.profile_sample)
        return LocalSample(*await asyncio.to_thread(current_sample, states, now, cutoff), active)

    @contextlib.asynccontextmanager
    async def _own_sample(self) -> AsyncIterator[CustomerSample]:
        """A sample read for one call and freed after it, not held until the next refresh."""
        sample = await self.sample_customers()
        try:
            yield sample
        finally:
            await sample.release()

    async def first_fit(self, sample: CustomerSample) -> Proposal | None:
        """The first model, fitted on the sample alone (None: fewer customers than the
        warm-up's ``n_segments * model_warmup_per_segment``): a step of history makes it so,
        not a merge of workers' clusterers, whose state depends on the wall clock."""
        k = self.settings.start_segments
        if sample.n_train < max(2 * k, k * self.settings.model_warmup_per_segment):
            return None
        nxt = await sample.first_model(k, self.settings.seed)
        nxt.names = self.values.names(nxt, {}, self.assigner.profiles)
        return nxt, [Lifecycle(sid, "born") for sid in nxt.ids]

    async def refine(self, sample: CustomerSample | None = None, *,
                     rescale: bool = False) -> Proposal | None:
        """Re-fit the global centres on a sample of current customers.

        The rows and the k-means re-fit are built off the event loop (where the sample is).
        ``rescale`` (steps of history, whose model no merge updates): in the sample's own scale,
        from the segments' members as they stand (:func:`~streamseg.segmenting.offload.in_sample_scale`).
        """
        model = self.assigner.model
        if model is None:
            return None
        if sample is None:
            async with self._own_sample() as own:
                return await self.refine(own, rescale=rescale)
        if sample.n_train < 2 * len(model.ids):  # too few active customers to fit on
            return None
        start = await self.choose_k(model, sample)
        if sample.n_train < 2 * len(start.ids):
            return None
        new_k = start is not model
        base = await sample.in_scale(model) if rescale else model  # ids are matched against it
        if rescale:
            start = dataclasses.replace(start, mean=base.mean, var=base.var, centers=start.rescaled(
                base.mean, base.var)) if new_k else base
        centers, weights = await sample.fit(start, self.settings.seed)
        if self.assigner.model is not model:  # a newer version arrived meanwhile; re-fit it next time
            if new_k and self.k_chooser is not None:
                self.k_chooser.missed(len(start.ids))  # the evidence for that k still holds
            return None
        nxt, events = base.evolve(base.mean, base.var, centers, weights,
                                  max_move=self.settings.identity_max_move)
        if rescale and not events and _moved(model.rescaled(base.mean, base.var), centers) < MIN_MATERIAL_MOVE:
            return None  # the segments stand where the model has them: no version (drift reads versions)
        if nxt is base:  # barely moved from where their members stand
            if base is model:
                return None
            nxt = dataclasses.replace(base, version=model.version + 1, centers=centers, weights=weights)
        nxt.names = {**model.names, **self.values.names(nxt, model.names, self.assigner.profiles)}
        return nxt, events

    async def choose_k(self, model: SegmentModel, sample: CustomerSample) -> SegmentModel:
        """The model to re-fit from: ``model``, or under auto, when the evidence for another k
        is clear and lasting (:class:`~streamseg.segmenting.choose_k.KChooser`), ``model`` with
        the sample's k-means centres for that k (evolving to them makes the lifecycle events)."""
        if self.k_chooser is None:
            return model
        scores = await sample.evaluate(model, self.k_chooser.rule.ks, self.settings.seed)
        k = self.k_chooser.observe(len(model.ids), scores, sample.n_train)
        chosen = next((s for s in scores if s.k == k), None)
        if chosen is None or k == len(model.ids):
            return model
        log.info("changing the number of segments from %d to %d: %s", len(model.ids), k,
                 ", ".join(f"k={s.k} silhouette {s.silhouette:.3f} stability {s.stability:.2f}"
                           for s in scores))
        return dataclasses.replace(model, ids=list(range(k)), centers=chosen.centers,
                                   weights=np.ones(k))

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
        await self.validate(sample, model)
        return self.catalog(model, [])

    async def validate(self, sample: CustomerSample, model: SegmentModel) -> None:
        """Measure ``model``'s segments on the sample (silhouette, members, stability against
        the version it replaced) and flag them for the catalog (docs/model.md: validation)."""
        prev = self.previous if self.previous and self.previous.version < model.version else None
        measured = await sample.validate(model, prev, self.settings.seed)
        self.validation = catalog_validation(measured, self.settings.segment_min_share,
                                             self.settings.segment_min_silhouette)

    # -- the catalog -------------------------------------------------------------------
    def catalog(self, model: SegmentModel, events: Sequence[Lifecycle]) -> list[CatalogEntry]:
        """Catalog entries for a model version: every live segment plus what ended."""
        return catalog_entries(model, events, self.assigner, self.validation,
                               self.k_chooser.last if self.k_chooser else None,
                               self.values.by_segment,
                               self.values.name_reasons(model, self.assigner.profiles))

    async def publish_catalog(self, entries: Sequence[CatalogEntry]) -> None:
        """Catalog entries to the compacted segments topic, then to Redis (for the API)."""
        if not entries:
            return
        records: list[OutRecord] = [(self.settings.topic_segments, str(e.segment_id).encode(),
                                     e.to_bytes()) for e in entries]
        await self.retry(lambda: self.publisher.publish(records), "publishing the catalog")
        await self.retry(lambda: self.store.write_catalog({e.segment_id: e.to_bytes() for e in entries}),
                         "writing the catalog")


def catalog_entries(model: SegmentModel, events: Sequence[Lifecycle], assigner: Assigner,
                    validation: Mapping[int, SegmentValidation], k_selection: KSelection | None,
                    value: Mapping[int, SegmentValue],
                    reasons: Mapping[int, str] | None = None) -> list[CatalogEntry]:
    """:meth:`Leader.catalog`: each live segment with its name (and why), profile,
    validation and value; then the segments ``events`` merged or retired."""
    by_id = {e.segment_id: e for e in events}
    name_of = assigner.name_of
    ts = now_iso()
    out = []
    for sid in model.ids:
        e = by_id.get(sid)
        prof = assigner.profiles.get(sid)
        if prof is not None:
            prof = prof.model_copy(update={"name": name_of(sid), "model_version": model.version})
        out.append(CatalogEntry(
            segment_id=sid, status=e.status if e else "active",  # type: ignore[arg-type]
            model_version=model.version, name=name_of(sid), profile=prof,
            name_reason=(reasons or {}).get(sid, ""), related=list(e.related) if e else [], updated_ts=ts,
            validation=validation.get(sid), k_selection=k_selection, value=value.get(sid)))
    for e in events:
        if e.status in ("merged", "retired"):
            out.append(CatalogEntry(
                segment_id=e.segment_id, status=e.status,  # type: ignore[arg-type]
                model_version=model.version, name=name_of(e.segment_id), profile=None,
                related=list(e.related), updated_ts=ts, k_selection=k_selection))
    return out


def _moved(before: np.ndarray, after: np.ndarray) -> float:
    """The largest move of a centre (row by row, same segments), in standardized units."""
    return float(np.sqrt(((after - before) ** 2).sum(1)).max()) if len(after) else 0.0
