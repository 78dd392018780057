"""The leader's customer-value work: fit the model and publish it, measure the segments.

The fit runs in the background, at most every ``value_refit_s``, on a sample of its own
read in a child process of its own (:attr:`LeaderValue.sampler`): it takes seconds (a
minute while PyTensor first compiles), and the catalog refresh does not wait for it. The
per-segment measurement scores the refresh's sample where it is (the sample process, see
:mod:`streamseg.segmenting.offload`); only parameters and per-segment sums come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from streamseg.clock import EngineClock
from streamseg.features.store import FeatureStore
from streamseg.metrics import Metrics
from streamseg.publish.publisher import Publisher
from streamseg.publish.records import SegmentProfile, SegmentValue
from streamseg.retry import Retrier
from streamseg.segmenting.model import SegmentModel
from streamseg.segmenting.naming import ValueStanding, name_reasons, name_segments
from streamseg.segmenting.offload import ChildSample, LocalSample, SampleProcess
from streamseg.segmenting.sync import VALUE_KEY
from streamseg.settings import Settings
from streamseg.value.params import ValueParams
from streamseg.value.scorer import ValueScorer
from streamseg.value.segments import segment_values

log = logging.getLogger(__name__)


class LeaderValue:
    """Fits and publishes the value parameters; keeps the latest value of every segment."""

    def __init__(self, settings: Settings, store: FeatureStore, publisher: Publisher,
                 retry: Retrier, clock: EngineClock, scorer: ValueScorer,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.publisher = publisher
        self.retry = retry
        self.clock = clock
        self.scorer = scorer
        self.by_segment: dict[int, SegmentValue] = {}  # the latest measurement, by segment id
        self._sizes: tuple[float, dict[int, int]] | None = None  # (clock ms, live sizes) then
        #: the fits' own child process (a worker sets it; None: threads), so a fit (seconds,
        #: a minute while PyTensor compiles) never holds up the catalog refresh's sample
        self.sampler: SampleProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self._fitted_at: float | None = None  # time.monotonic() of the last fit

    def refit_soon(self, read: Callable[[], Awaitable[ChildSample | LocalSample]],
                   model: SegmentModel | None) -> bool:
        """Start a fit in the background on a sample ``read`` gives, unless one runs or the
        last is younger than ``value_refit_s``; True if one started."""
        if not self.settings.value_fit or (self._task is not None and not self._task.done()):
            return False
        if self._fitted_at is not None and \
                time.monotonic() - self._fitted_at < self.settings.value_refit_s:
            return False
        self._task = asyncio.ensure_future(self._refit_from(read, model))
        return True

    async def _refit_from(self, read: Callable[[], Awaitable[ChildSample | LocalSample]],
                          model: SegmentModel | None) -> None:
        try:
            await self.refit_with(read, model)
        except Exception as exc:  # Redis or the child away: the next refresh tries again
            log.error("the customer-value fit did not run: %r", exc)

    async def refit_with(self, read: Callable[[], Awaitable[ChildSample | LocalSample]],
                         model: SegmentModel | None) -> ValueParams | None:
        """:meth:`refit` on a sample ``read`` gives, now (the background fit's body; tests and
        benchmarks await it to re-fit at a point of their choosing)."""
        sample = await read()
        try:
            params = await self.refit(sample, model)
            if params is not None:
                self._fitted_at = time.monotonic()
            return params
        finally:
            await sample.release()

    async def close(self) -> None:
        """Stop a running fit and the fits' child process (worker shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.sampler is not None:
            await asyncio.to_thread(self.sampler.close)

    async def refit(self, sample: ChildSample | LocalSample,
                    model: SegmentModel | None) -> ValueParams | None:
        """Fit the model on the sample and publish it on the model topic and in Redis; None when
        not fitted (too few buyers, or ``value_fit`` off). A failed fit is logged and the
        parameters in hand stay."""
        if not self.settings.value_fit:
            return None
        prev = self.scorer.params
        started = time.perf_counter()
        try:
            params = await sample.fit_value(self.clock.now_ms(), (prev.version if prev else 0) + 1,
                                            model.version if model else 0, self.settings.seed)
        except Exception as exc:  # pymc's optimiser on odd data: keep scoring with what we have
            log.error("fitting the customer-value model failed: %r", exc)
            return None
        if params is None:
            return None
        raw = params.to_json()
        await self.retry(lambda: self.publisher.publish([(self.settings.topic_model, VALUE_KEY, raw)]),
                         "publishing the value parameters")
        await self.retry(lambda: self.store.write_value_params(raw), "writing the value parameters")
        self.scorer.adopt(params)
        log.info("fitted customer value v%d on %d buyers (%d repeat) in %.1f s", params.version,
                 params.n_customers, params.n_repeat, time.perf_counter() - started)
        return params

    async def measure(self, sample: ChildSample | LocalSample, model: SegmentModel | None) -> None:
        """Each segment's customer value on the sample, for the catalog (:attr:`by_segment`)."""
        params = self.scorer.params
        if params is None or model is None:
            return
        now = self.clock.now_ms()
        sums = await sample.value_sums(now, params, self.scorer.horizon_days, self.scorer.bands)
        sizes = await self.store.segment_sizes()
        then, before = self._sizes or (now, {})
        self.by_segment = segment_values(sums, sizes, before, (now - then) / 1000.0, params,
                                         self.scorer.horizon_days, self.scorer.currency)
        self._sizes = (now, dict(sizes))
        if self.metrics is not None:
            self.export(self.metrics)

    def standings(self, profiles: Mapping[int, SegmentProfile]) -> dict[int, ValueStanding]:
        """Each measured segment's churn risk and spend to date against the population's
        (what "At-risk high-value" reads); empty until both were measured."""
        both = {sid: (v, profiles[sid]) for sid, v in self.by_segment.items()
                if sid in profiles and profiles[sid].means}
        customers = sum(v.customers for v, _ in both.values())
        if not customers:
            return {}
        risk = sum(v.mean_churn_risk * v.customers for v, _ in both.values()) / customers
        spend = sum(p.means.get("monetary_total", 0.0) * v.customers
                    for v, p in both.values()) / customers
        return {sid: ValueStanding(v.mean_churn_risk, risk, p.means.get("monetary_total", 0.0),
                                   spend, self.scorer.currency) for sid, (v, p) in both.items()}

    def names(self, model: SegmentModel, previous: Mapping[int, str],
              profiles: Mapping[int, SegmentProfile]) -> dict[int, str]:
        """``model``'s live segments' names (:func:`name_segments`), "At-risk high-value"
        from the latest measurement."""
        return name_segments(model.centers_by_id(), previous=previous,
                             value=self.standings(profiles))

    def renamed(self, model: SegmentModel | None,
                profiles: Mapping[int, SegmentProfile]) -> SegmentModel | None:
        """``model``'s centres as the next version under new names, when the segments' value
        moved a name; None when every name stands."""
        if model is None:
            return None
        names = {**model.names, **self.names(model, model.names, profiles)}
        if names == model.names:
            return None
        return dataclasses.replace(model, version=model.version + 1, names=names)

    def name_reasons(self, model: SegmentModel,
                     profiles: Mapping[int, SegmentProfile]) -> dict[int, str]:
        """Why each of ``model``'s segments has its name (the catalog's ``name_reason``)."""
        return name_reasons(model.names, model.centers_by_id(), self.standings(profiles))

    def export(self, metrics: Metrics) -> None:
        """The latest measurement into the value gauges (what the alert rules watch)."""
        values = self.by_segment.values()
        customers = sum(v.customers for v in values)
        high = sum(v.high_risk_share * v.customers for v in values)
        metrics.value_high_risk_share.set(high / customers if customers else 0.0)
        metrics.value_at_risk.set(sum(v.value_at_risk for v in values))
        metrics.value_lifetime.set(sum(v.total_lifetime_value for v in values))
