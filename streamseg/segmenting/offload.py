"""The leader's customer sample, read and computed in a child process.

Every ``catalog_refresh_s`` the leader reads a sample of up to
``profile_sample`` customers from Redis, derives their features, re-fits the
centres by batch k-means, builds the segment profiles and validates the
segments (:mod:`streamseg.segmenting.validation`): about half a second of
Python for 20k customers, plus about as much for the silhouette. In a thread of the worker that work holds the
interpreter lock against the batch loop (which gets it back every 0.5 ms
switch interval, so batches run at about half speed while it lasts: the
refresh showed as latency spikes in ``streamseg bench``). Here it runs in one
child process started at the first refresh, so the worker's loop keeps its
interpreter and only the CPU is shared; and the child runs ``nice`` (``sample_nice``, 10 by
default), so when the cores are busy its bursts of model work (a value fit is seconds of
CPU) wait for the batch loop rather than delay it.

The sample stays in the child between calls (:class:`ChildSample` holds its
token) until the refresh releases it: the re-fit and the profiles are computed
from the same customers, and only centres and profiles travel back. The child
imports only what it computes with (about 90 MiB resident, no River or pandas;
``sklearn.metrics`` at the first validation only, +38 MiB; scikit-learn's k-means
under ``STREAMSEG_N_SEGMENTS=auto``, where it scores each k:
:mod:`streamseg.segmenting.choose_k`). The customer-value fits run in a second
process of this kind (:mod:`streamseg.leader.value`), which alone loads pymc-marketing
(about 480 MiB). If the child dies, the call fails with
:class:`SampleLost` and the next refresh starts a new child.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np

from streamseg.features.keys import Keys
from streamseg.features.registry import MODEL_FEATURES, derive, model_input
from streamseg.features.store import RedisFeatureStore
from streamseg.publish.records import SegmentProfile
from streamseg.segmenting.choose_k import KScore, evaluate
from streamseg.segmenting.model import SegmentModel
from streamseg.segmenting.profiles import build_profiles
from streamseg.segmenting.validation import Validation, measure
from streamseg.segmenting.vectors import (
    kmeans_plus_plus,
    lloyd,
    pairwise_sq_dist,
    signal_var,
)
from streamseg.value.fit import fit_states
from streamseg.value.params import ValueParams
from streamseg.value.segments import Sums, sample_values

log = logging.getLogger(__name__)
T = TypeVar("T")
State = dict[str, float | str]

#: how often the child checks that the worker still runs
PARENT_POLL_S = 1.0
#: in the child: the sample of the latest refresh, by token
_HELD: dict[str, tuple[list[State], list[dict[str, float]]]] = {}
#: ... and its part the segments are fitted on (:func:`training`)
_TRAIN: dict[str, tuple[list[State], list[dict[str, float]]]] = {}


class SampleLost(RuntimeError):
    """The child holding the sample is gone (it died, or a newer sample replaced it)."""


def last_ts(state: Mapping[str, float | str], default: float) -> float:
    ts = state.get("last_ts")
    return ts if isinstance(ts, float) else default


def current_sample(states: list[State], now_ms: float, cutoff_ms: float
                   ) -> tuple[list[State], list[dict[str, float]]]:
    """Customers active since ``cutoff_ms`` in the engine's clock, with their features at ``now_ms``."""
    current = [st for st in states if last_ts(st, now_ms) >= cutoff_ms]
    return current, [derive(st, now_ms) for st in current]


def training(states: list[State], derived: list[dict[str, float]], active_days: float | None
             ) -> tuple[list[State], list[dict[str, float]]]:
    """The part of a sample the segments are fitted on: customers active within ``active_days``
    (``STREAMSEG_MODEL_ACTIVE_DAYS``; None: all of it). Long-lapsed customers stay in the
    profiles, the validation and the value fit; they no longer pull centres (docs/model.md).

    >>> training([{"a": 1.0}, {"b": 2.0}], [{"days_since_last_activity": 3.0},
    ...                                     {"days_since_last_activity": 90.0}], 56.0)
    ([{'a': 1.0}], [{'days_since_last_activity': 3.0}])
    """
    if active_days is None:
        return states, derived
    keep = [i for i, d in enumerate(derived) if d["days_since_last_activity"] <= active_days]
    return [states[i] for i in keep], [derived[i] for i in keep]


def fit(model: SegmentModel, derived: list[dict[str, float]], seed: int,
        reseed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Batch k-means re-fit of ``model``'s centres on the sample's model inputs.

    The rows are sorted first: Redis hands the sample over in SCAN order, which differs
    between two stores holding the same customers, and the re-fit's seeding draws rows
    by position, so the same customers must give the same re-fit (reproducible replays).
    ``reseed``: start from the best of a few k-means++ seeds on the sample instead of the
    model's centres (a first model on history: those came from the order batches arrived in).
    """
    rows = model.matrix([model_input(d) for d in derived])
    rows = rows[np.lexsort(rows.T[::-1])]
    if reseed and len(rows) >= len(model.ids):
        model = dataclasses.replace(model, centers=seeded_centers(model.scale(rows), len(model.ids), seed))
    return model.refine(rows, seed=seed)


def first_model(derived: list[dict[str, float]], k: int, seed: int) -> SegmentModel:
    """The first model of a history, from the sample alone: standardized by the sample's own
    mean and variance, centres from k-means++ seeds re-fitted on it (:func:`fit`). Nothing in
    it depends on the order batches arrived in, or on how far a worker's clusterer got by the
    wall clock: two replays of the same history make the same first model at the same step."""
    d = len(MODEL_FEATURES)
    shape = SegmentModel.first(MODEL_FEATURES, np.zeros(d), np.ones(d), np.zeros((k, d)), np.ones(k))
    rows = sample_rows(shape, derived)
    scaled = in_sample_scale(shape, rows, [None] * len(rows))  # no members yet: the scale only
    centers, weights = fit(scaled, derived, seed, reseed=True)
    return SegmentModel.first(MODEL_FEATURES, scaled.mean, scaled.var, centers, weights)


def sample_rows(model: SegmentModel, derived: list[dict[str, float]]) -> np.ndarray:
    """The sample's model inputs, one row per customer, in ``model``'s column order."""
    return model.matrix([model_input(d) for d in derived])


def in_sample_scale(model: SegmentModel, rows: np.ndarray, segments: list[int | None]) -> SegmentModel:
    """``model`` standardized by the sample's own mean and variance (as a batch ``StandardScaler``
    fits them; inputs constant for everyone get variance 0), each centre moved to the mean of
    its members now (``segments``: each row's current segment id; a segment with none keeps
    its centre): the segments as they stand, where a step of history re-fits from and matches
    ids against. (Centres alone compare badly across a changed scale: the whole population
    aged by days since the last step, and in a scale where recency varied by hours that put
    every old centre hundreds of units from every new one.)"""
    if not len(rows):
        return model
    mean = rows.mean(0)
    out = dataclasses.replace(model, mean=mean, var=signal_var(mean, rows.var(0)))
    z, centers = out.scale(rows), model.rescaled(out.mean, out.var)
    labels = np.array([-1 if s is None else s for s in segments])
    for j, sid in enumerate(model.ids):
        if (labels == sid).any():
            centers[j] = z[labels == sid].mean(0)
    out.centers = centers
    return out


def segments_of(states: list[State]) -> list[int | None]:
    """Each sampled customer's current segment id (None: not assigned yet)."""
    return [int(s) if isinstance(s := st.get("seg"), float) else None for st in states]


def seeded_centers(z: np.ndarray, k: int, seed: int, tries: int = 4) -> np.ndarray:
    """The lowest-inertia k-means of ``z`` from ``tries`` k-means++ seeds (deterministic)."""
    rng = np.random.default_rng(seed)
    fits = [lloyd(z, kmeans_plus_plus(z, k, rng), iterations=20, rng=rng)[0] for _ in range(tries)]
    return min(fits, key=lambda c: float(pairwise_sq_dist(z, c).min(1).sum()))


def validate(model: SegmentModel, previous: SegmentModel | None, derived: list[dict[str, float]],
             seed: int) -> Validation:
    """Silhouette, members and stability of ``model``'s segments on the sample's model inputs."""
    return measure(model, previous, model.matrix([model_input(d) for d in derived]), seed)


def evaluate_k(model: SegmentModel, derived: list[dict[str, float]], ks: list[int],
               seed: int) -> list[KScore]:
    """Scores of every k in ``ks`` on the sample, in the model's scale (``STREAMSEG_N_SEGMENTS=auto``)."""
    return evaluate(model.scale(model.matrix([model_input(d) for d in derived])), ks, seed=seed)


# -- in the child ---------------------------------------------------------------------
def _follow_parent(parent: int, nice: int = 0) -> None:
    """Exit when the worker is gone: a killed worker (kill -9) runs no shutdown, and a pool's
    process holds its own queue's pipe open, so it would otherwise wait forever. ``nice``:
    lower this process's CPU priority by that much (see the module doc)."""
    if nice:
        os.nice(nice)
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _read(token: str, redis_url: str, key_prefix: str, limit: int, now_ms: float,
          cutoff_ms: float, active_days: float | None) -> tuple[int, int]:
    async def read() -> list[State]:
        store = RedisFeatureStore.from_url(redis_url, Keys(key_prefix), dedup_horizon_days=1.0,
                                           retention_days=1.0)
        try:
            return await store.sample_states(limit)
        finally:
            await store.close()

    states = asyncio.run(read())
    _HELD.clear()  # one refresh at a time: the previous sample is done with
    _TRAIN.clear()
    _HELD[token] = current_sample(states, now_ms, cutoff_ms)
    _TRAIN[token] = training(*_HELD[token], active_days)
    return len(_HELD[token][0]), len(_TRAIN[token][0])


def _held(token: str, train: bool = False) -> tuple[list[State], list[dict[str, float]]]:
    """The sample ``token`` (``train``: only its part the segments are fitted on)."""
    try:
        return _TRAIN[token] if train else _HELD[token]
    except KeyError:
        raise SampleLost(f"sample {token} is no longer held (a newer refresh replaced it)") from None


def _fit(token: str, model: SegmentModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return fit(model, _held(token, train=True)[1], seed)


def _first_model(token: str, k: int, seed: int) -> SegmentModel:
    return first_model(_held(token, train=True)[1], k, seed)


def _in_scale(token: str, model: SegmentModel) -> SegmentModel:
    states, derived = _held(token, train=True)
    return in_sample_scale(model, sample_rows(model, derived), segments_of(states))


def _validate(token: str, model: SegmentModel, previous: SegmentModel | None,
              seed: int) -> Validation:
    return validate(model, previous, _held(token)[1], seed)


def _evaluate(token: str, model: SegmentModel, ks: list[int], seed: int) -> list[KScore]:
    return evaluate_k(model, _held(token, train=True)[1], ks, seed)


def _fit_value(token: str, now_ms: float, version: int, model_version: int,
               seed: int) -> ValueParams | None:
    return fit_states(_held(token)[0], now_ms, version=version, model_version=model_version,
                      seed=seed)


def _value_sums(token: str, now_ms: float, params: ValueParams, horizon_days: float,
                bands: tuple[tuple[str, float], ...]) -> dict[int, Sums]:
    return sample_values(_held(token)[0], now_ms, params, horizon_days, bands)


def _drop(token: str, malloc_trim: bool) -> None:
    _TRAIN.pop(token, None)
    if _HELD.pop(token, None) is not None:
        gc.collect()  # the sample's dicts go back to the allocator between refreshes
        if malloc_trim:
            _trim()


def _trim() -> None:
    """Hand the C heap's free pages back to the system (glibc only; elsewhere nothing).

    Python frees the sample's objects into the C allocator, which keeps the
    pages: without this the process stays at a refresh's high-water mark
    (about 270 MiB at 20k customers) between refreshes.
    ``STREAMSEG_SAMPLE_MALLOC_TRIM=false`` (``SampleProcess(malloc_trim=False)``)
    turns it off, for comparison (``load_tests/sample_memory.py --no-trim``).
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _profiles(token: str, names: Mapping[int, str], sizes: Mapping[int, int],
              model_version: int) -> dict[int, SegmentProfile]:
    states, derived = _held(token)
    return build_profiles(states, derived, names, sizes, model_version)


# -- in the worker ----------------------------------------------------------------------
class SampleProcess:
    """One child process for the leader's samples (started at first use, see module doc).

    ``malloc_trim``: the child hands freed heap back after each release (see ``_trim``).
    ``nice``: how much nicer than the worker the child runs.
    """

    def __init__(self, redis_url: str, key_prefix: str, *, malloc_trim: bool = True,
                 nice: int = 0) -> None:
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.malloc_trim = malloc_trim
        self.nice = nice
        self._pool: ProcessPoolExecutor | None = None

    async def sample(self, limit: int, now_ms: float, cutoff_ms: float,
                     active_days: float | None = None) -> ChildSample:
        """Read and derive a sample in the child; the handle computes on it there.
        ``active_days``: the part the segments are fitted on (:func:`training`)."""
        token = uuid.uuid4().hex
        n, n_train = await self.call(_read, token, self.redis_url, self.key_prefix, limit, now_ms,
                                     cutoff_ms, active_days)
        return ChildSample(self, token, n, n_train)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            # spawn, not fork: the worker has threads (Faust, aiokafka, the web server)
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_follow_parent,
                                             initargs=(os.getpid(), self.nice))
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool as exc:
            log.warning("the sample process died (%s); the next refresh starts a new one", exc)
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise SampleLost(f"the sample process died: {exc}") from exc

    async def release(self, token: str) -> None:
        """Free a sample in the child (nothing to do if the child is gone with it)."""
        if self._pool is not None:
            with contextlib.suppress(SampleLost):
                await self.call(_drop, token, self.malloc_trim)

    def pid(self) -> int | None:
        """The child's process id, once it runs (for tests and operators)."""
        procs = getattr(self._pool, "_processes", None) or {}
        return next(iter(procs), None)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class ChildSample:
    """A sample held in the child process: its size, and the re-fit and profiles computed there."""

    def __init__(self, owner: SampleProcess, token: str, n: int, n_train: int | None = None) -> None:
        self.owner = owner
        self.token = token
        self.n = n
        self.n_train = n if n_train is None else n_train  # customers the segments are fitted on

    def __len__(self) -> int:
        return self.n

    async def fit(self, model: SegmentModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return await self.owner.call(_fit, self.token, model, seed)

    async def first_model(self, k: int, seed: int) -> SegmentModel:
        return await self.owner.call(_first_model, self.token, k, seed)

    async def evaluate(self, model: SegmentModel, ks: list[int], seed: int) -> list[KScore]:
        return await self.owner.call(_evaluate, self.token, model, ks, seed)

    async def in_scale(self, model: SegmentModel) -> SegmentModel:
        return await self.owner.call(_in_scale, self.token, model)

    async def profiles(self, names: Mapping[int, str], sizes: Mapping[int, int],
                       model_version: int) -> dict[int, SegmentProfile]:
        return await self.owner.call(_profiles, self.token, dict(names), dict(sizes), model_version)

    async def validate(self, model: SegmentModel, previous: SegmentModel | None,
                       seed: int) -> Validation:
        return await self.owner.call(_validate, self.token, model, previous, seed)

    async def fit_value(self, now_ms: float, version: int, model_version: int,
                        seed: int) -> ValueParams | None:
        """The customer-value model fitted on the sample (pymc-marketing, in the child)."""
        return await self.owner.call(_fit_value, self.token, now_ms, version, model_version, seed)

    async def value_sums(self, now_ms: float, params: ValueParams, horizon_days: float,
                         bands: tuple[tuple[str, float], ...]) -> dict[int, Sums]:
        """The sample's members scored and summed per segment (in the child)."""
        return await self.owner.call(_value_sums, self.token, now_ms, params, horizon_days, bands)

    async def release(self) -> None:
        """The refresh is done with it: the child frees the sample until the next one."""
        await self.owner.release(self.token)


class LocalSample:
    """A sample held in this process; the re-fit and profiles run in threads."""

    def __init__(self, states: list[State], derived: list[dict[str, float]],
                 active_days: float | None = None) -> None:
        self.states = states
        self.derived = derived
        #: the part the segments are fitted on (:func:`training`)
        self.train_states, self.train_derived = training(states, derived, active_days)
        self.n_train = len(self.train_states)

    def __len__(self) -> int:
        return len(self.states)

    async def fit(self, model: SegmentModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return await asyncio.to_thread(fit, model, self.train_derived, seed)

    async def first_model(self, k: int, seed: int) -> SegmentModel:
        return await asyncio.to_thread(first_model, self.train_derived, k, seed)

    async def evaluate(self, model: SegmentModel, ks: list[int], seed: int) -> list[KScore]:
        return await asyncio.to_thread(evaluate_k, model, self.train_derived, ks, seed)

    async def in_scale(self, model: SegmentModel) -> SegmentModel:
        return await asyncio.to_thread(lambda: in_sample_scale(
            model, sample_rows(model, self.train_derived), segments_of(self.train_states)))

    async def profiles(self, names: Mapping[int, str], sizes: Mapping[int, int],
                       model_version: int) -> dict[int, SegmentProfile]:
        return await asyncio.to_thread(build_profiles, self.states, self.derived, names, sizes,
                                       model_version)

    async def validate(self, model: SegmentModel, previous: SegmentModel | None,
                       seed: int) -> Validation:
        return await asyncio.to_thread(validate, model, previous, self.derived, seed)

    async def fit_value(self, now_ms: float, version: int, model_version: int,
                        seed: int) -> ValueParams | None:
        return await asyncio.to_thread(fit_states, self.states, now_ms, version=version,
                                       model_version=model_version, seed=seed)

    async def value_sums(self, now_ms: float, params: ValueParams, horizon_days: float,
                         bands: tuple[tuple[str, float], ...]) -> dict[int, Sums]:
        return await asyncio.to_thread(sample_values, self.states, now_ms, params, horizon_days, bands)

    async def release(self) -> None:
        """Nothing held elsewhere: the sample goes when the last reference does."""
