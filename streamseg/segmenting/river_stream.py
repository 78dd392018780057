"""River's stream clusterers behind the :class:`Segmenter` protocol, macro-clusters cached.

STREAMKMeans, DBSTREAM and CluStream (and DenStream, in
:mod:`streamseg.segmenting.river_denstream`) keep a summary of the stream
(micro-clusters, a chunk) that is cheap to update per event, plus an offline
"macro" step that turns the summary into clusters: DBSTREAM's shared-density
reclustering, CluStream's k-means over micro-clusters, DenStream's DBSCAN over
potential micro-clusters. River reruns that step inside every ``predict_one``
(milliseconds per call). Here ``learn`` feeds River one event at a time (the
online part) and the centres used for assignment are a cached macro-cluster
snapshot, refreshed every ``refresh_every`` learns or on :meth:`refresh`;
``assign_many`` is a vectorised nearest-centre search over that cache.

Shared front: River's ``StandardScaler`` learns online; the model learns scaled
vectors and centres are in scaled units. The first ``warmup`` vectors are
buffered and fed to the model scaled with the statistics of the whole buffer,
so the model's first picture is not skewed by a scaler that has seen 3 events.
``version`` starts at 1 when the first refresh yields centres and goes up by
one whenever a refresh changes them. Everything in a :meth:`snapshot` is plain
JSON: the River model's learned state is written out field by field.
"""

from __future__ import annotations

import abc
import collections
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
from river import cluster, preprocessing, stats
from river.cluster.clustream import CluStreamMicroCluster
from river.cluster.dbstream import DBSTREAMMicroCluster

from streamseg.segmenting.base import Assignment, Vector
from streamseg.segmenting.vectors import (
    kmeans_plus_plus,
    lloyd,
    load_scaler,
    nearest,
    pairwise_sq_dist,
    scaled_matrix,
    scaled_one,
    scaler_state,
)

Point = dict[str, float]


class StreamSegmenter(abc.ABC):
    """Scaler, warm-up, cached macro-cluster centres and snapshots; subclasses bring the model.

    A subclass names its ``kind`` (its key in
    :data:`streamseg.segmenting.factory.SEGMENTERS` and in snapshots), builds
    its River model in ``__init__`` from its own keyword arguments, and
    supplies the online step (``_learn_scaled``), the macro step
    (``_macro_centers``) and its state as plain data. These parameters are
    common to every subclass:

    Parameters
    ----------
    feature_names
        The features of every vector, in the order centres are written.
    n_segments
        The number of segments asked for: exact for the k-means family, a
        guide (``max_segments`` defaults to twice it) for the density-based.
    warmup
        Vectors buffered before the model first learns, scaled together with
        the statistics of the whole buffer; until then not ``ready``.
    seed
        Seed of every random choice (k-means++ seeding, River's models).
    refresh_every
        The macro-cluster centres are recomputed once every this many learns.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        n_segments: int = 6,
        warmup: int = 500,
        seed: int = 42,
        refresh_every: int = 1000,
    ) -> None:
        if warmup < 2 or refresh_every < 1 or n_segments < 1:
            raise ValueError("need warmup >= 2, refresh_every >= 1 and n_segments >= 1")
        self.feature_names = list(feature_names)
        self.n_segments = n_segments
        self.warmup = warmup
        self.seed = seed
        self.refresh_every = refresh_every
        self.scaler = preprocessing.StandardScaler()
        self._buffer: list[Point] | None = []  # raw vectors until the warm-up ends
        self._learned = 0
        self._version = 0
        self._centers: np.ndarray | None = None  # the macro-cluster cache, scaled units

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Hyperparameters that suit the shared segmenter suite's small 3-feature blobs."""
        return {}

    # -- protocol -----------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._centers is not None

    @property
    def version(self) -> int:
        return self._version

    @property
    def learned(self) -> int:
        return self._learned

    def learn(self, x: Vector) -> None:
        x = dict(x)
        self.scaler.learn_one(x)
        self._learned += 1
        if self._buffer is not None:
            self._buffer.append(x)
            if len(self._buffer) >= self.warmup:
                self._end_warmup()
            return
        self._learn_scaled(scaled_one(self.scaler, x))
        if self._learned % self.refresh_every == 0:
            self.refresh()

    def end_warmup(self) -> bool:
        if self._buffer is not None and len(self._buffer) >= self.n_segments:
            self._end_warmup()
        return self.ready

    def assign_many(self, xs: Sequence[Vector]) -> list[Assignment]:
        if self._centers is None:
            raise RuntimeError("segmenter is still warming up; check .ready first")
        if not xs:
            return []
        best, dist = nearest(scaled_matrix(self.scaler, self.feature_names, xs), self._centers)
        return [Assignment(int(b), float(d)) for b, d in zip(best, dist, strict=True)]

    def centers(self) -> dict[int, dict[str, float]]:
        if self._centers is None:
            return {}
        return {i: dict(zip(self.feature_names, map(float, row), strict=True))
                for i, row in enumerate(self._centers)}

    def scaler_stats(self) -> tuple[dict[str, float], dict[str, float], float]:
        n = max(self.scaler.counts.values(), default=0)
        return ({f: float(self.scaler.means[f]) for f in self.feature_names},
                {f: float(self.scaler.vars[f]) for f in self.feature_names}, float(n))

    def refresh(self) -> bool:
        """Recompute the macro-clusters now; True if the centres changed (the version went up).

        A macro step that finds no cluster keeps the previous centres (or leaves
        the segmenter not ready, to be retried at the next refresh).
        """
        if self._buffer is not None:
            return False
        new = self._macro_centers()
        if len(new) == 0:
            return False
        old = self._centers
        if old is not None and old.shape == new.shape and np.array_equal(old, new):
            return False
        self._centers = new
        self._version += 1
        return True

    # -- persistence -----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self._version,
            "learned": self._learned,
            "features": self.feature_names,
            "params": self.params(),
            "scaler": scaler_state(self.scaler),
            "centers": {str(k): v for k, v in self.centers().items()},
            "buffer": None if self._buffer is None else [dict(x) for x in self._buffer],
            "model": self._model_state(),
        }

    @classmethod
    def restore(cls, snap: Mapping[str, Any], **kw: Any) -> Self:
        """Rebuild from :meth:`snapshot` data; explicit arguments win over the snapshot's params."""
        if snap.get("kind") != cls.kind:
            raise ValueError(f"snapshot is of a {snap.get('kind')!r} segmenter, not {cls.kind!r}")
        seg = cls(snap["features"], **{**snap["params"], **kw})
        load_scaler(seg.scaler, snap["scaler"])
        seg._learned = int(snap["learned"])
        seg._version = int(snap["version"])
        seg._buffer = None if snap["buffer"] is None else [dict(x) for x in snap["buffer"]]
        centers = snap["centers"]
        if centers:
            seg._centers = np.array([[centers[str(i)][f] for f in seg.feature_names]
                                     for i in range(len(centers))], dtype=float)
        seg._load_model_state(snap["model"])
        return seg

    def params(self) -> dict[str, Any]:
        """Every constructor argument but the feature names: hyperparameters travel with the state."""
        return {"n_segments": self.n_segments, "warmup": self.warmup, "seed": self.seed,
                "refresh_every": self.refresh_every, **self._model_params()}

    # -- the model, per algorithm --------------------------------------------------
    @abc.abstractmethod
    def _model_params(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _learn_scaled(self, z: Point) -> None:
        """Feed one scaled vector to the River model (the per-event, online part)."""

    @abc.abstractmethod
    def _macro_centers(self) -> np.ndarray:
        """The macro-cluster centres (k x features, scaled units): the expensive step."""

    @abc.abstractmethod
    def _model_state(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _load_model_state(self, state: Mapping[str, Any]) -> None: ...

    def _start(self, z: np.ndarray) -> None:
        """End of warm-up: the model learns the buffered vectors, scaled alike."""
        for row in z:
            self._learn_scaled(self._point(row))

    # -- helpers -----------------------------------------------------------------
    def _end_warmup(self) -> None:
        assert self._buffer is not None
        z = scaled_matrix(self.scaler, self.feature_names, self._buffer)
        self._buffer = None
        self._start(z)
        self.refresh()

    def _point(self, row: np.ndarray) -> Point:
        return dict(zip(self.feature_names, map(float, row), strict=True))

    def _matrix(self, points: Sequence[Mapping[str, float]]) -> np.ndarray:
        return np.array([[p[f] for f in self.feature_names] for p in points],
                        dtype=float).reshape(len(points), len(self.feature_names))


def heaviest(centers: np.ndarray, weights: np.ndarray, *, min_share: float, cap: int) -> np.ndarray:
    """Density-based clusters worth a segment: weight share >= ``min_share``, heaviest first, at most ``cap``.

    Density-based algorithms report every dense blob, including a handful of
    points in a corner; those are noise for segmentation, and a segment per
    blob would swamp the catalog.

    >>> heaviest(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 30.0, 69.0]), min_share=0.05, cap=5)
    array([[2.],
           [1.]])
    """
    total = weights.sum()
    if total <= 0:
        return centers[:0]
    order = np.argsort(-weights, kind="stable")
    order = order[weights[order] / total >= min_share][:cap]
    return centers[order]


def _int_keys(d: Mapping[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in d.items()}


# --------------------------------------------------------------------------- STREAMKMeans


class ChunkedKMeans(cluster.STREAMKMeans):
    """River's STREAMKMeans with each chunk clustered properly (k-means++ and Lloyd).

    River clusters every chunk with a fresh online KMeans that starts from random
    centres and moves them by the same ``halflife`` as the main model, so with a
    small half-life the chunk centres stay close to their random start and
    feed noise into the main centres. Here each full chunk is clustered in
    numpy (seeded by ``seed`` and the chunk's position, so replays agree), and
    its centres update River's main KMeans, as the algorithm intends.
    """

    def learn_one(self, x: dict[Any, Any], w: float | None = None) -> None:
        self.time_stamp += 1
        self._temp_chunk[len(self._temp_chunk)] = x
        if len(self._temp_chunk) >= self.chunk_size:
            keys = list(x)
            z = np.array([[p[k] for k in keys] for p in self._temp_chunk.values()])
            rng = np.random.default_rng([self.kwargs["seed"], self.time_stamp])
            centers, _ = lloyd(z, kmeans_plus_plus(z, min(self.n_clusters, len(z)), rng))
            for row in centers:
                self._kmeans.learn_one(dict(zip(keys, map(float, row), strict=True)))
            self._temp_chunk = {}
        self.centers = self._kmeans.centers


class StreamKMeansSegmenter(StreamSegmenter):
    """STREAMKMeans (:class:`ChunkedKMeans`): k-means of chunk summaries.

    Cheap per event (a chunk append, plus one small k-means per ``chunk_size``
    events, whose centres move the main centres by ``halflife``). River starts
    from random centres, so the warm-up seeds them by k-means++ and Lloyd, as
    :class:`RiverKMeansSegmenter` does. Always ``n_segments`` centres; ids are
    River's centre indices, so they stay put between refreshes. Like
    :class:`RiverKMeansSegmenter`, it can continue from the global model's
    centres (:meth:`set_centers`).

    Parameters
    ----------
    feature_names, n_segments, warmup, seed, refresh_every
        As for every :class:`StreamSegmenter`.
    chunk_size
        Events per chunk; each full chunk is clustered into ``n_segments``
        centres that then move the main centres.
    halflife
        How far each chunk centre moves the nearest main centre (River's
        ``halflife``).

    Examples
    --------
    >>> seg = StreamKMeansSegmenter(["a"], n_segments=2, warmup=20, refresh_every=50,
    ...                             chunk_size=20, seed=1)
    >>> for i in range(100):
    ...     seg.learn({"a": i % 2 * 10.0 + (i % 7) / 10})
    >>> seg.ready, sorted(round(c["a"]) for c in seg.centers().values())
    (True, [-1, 1])
    """

    kind = "streamkmeans"

    def __init__(self, feature_names: Sequence[str], *, chunk_size: int = 200,
                 halflife: float = 0.05, **base: Any) -> None:
        super().__init__(feature_names, **base)
        self.model = ChunkedKMeans(chunk_size=chunk_size, n_clusters=self.n_segments,
                                   halflife=halflife, seed=self.seed)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"chunk_size": 40}

    def _model_params(self) -> dict[str, Any]:
        return {"chunk_size": self.model.chunk_size, "halflife": self.model.kwargs["halflife"]}

    def _start(self, z: np.ndarray) -> None:
        seeds, _ = lloyd(z, kmeans_plus_plus(z, self.n_segments, np.random.default_rng(self.seed)))
        self._set_centers({i: self._point(row) for i, row in enumerate(seeds)})

    def _learn_scaled(self, z: Point) -> None:
        self.model.learn_one(z)

    def _macro_centers(self) -> np.ndarray:
        c = self.model._kmeans.centers
        return self._matrix([c[i] for i in sorted(c)])

    def _model_state(self) -> dict[str, Any]:
        m = self.model
        return {"time_stamp": m.time_stamp, "chunk": list(m._temp_chunk.values()),
                "centers": {str(i): dict(c) for i, c in m._kmeans.centers.items()}}

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        self.model.time_stamp = int(state["time_stamp"])
        self.model._temp_chunk = {i: dict(p) for i, p in enumerate(state["chunk"])}
        self._set_centers(_int_keys(state["centers"]))

    def set_centers(self, centers: Mapping[int, Mapping[str, float]]) -> None:
        """Continue learning from these centres (the global model's, in this scale)."""
        self._set_centers(centers)
        self.refresh()

    def _set_centers(self, centers: Mapping[int, Mapping[str, float]]) -> None:
        self.model._kmeans.centers = {i: collections.defaultdict(float, c)
                                      for i, c in centers.items()}
        self.model.centers = self.model._kmeans.centers


# --------------------------------------------------------------------------- DBSTREAM


class DBSTREAMSegmenter(StreamSegmenter):
    """River's DBSTREAM: fixed-radius micro-clusters joined by the density they share.

    Per event: a fixed-radius neighbour search over the micro-clusters (cost
    grows with their number, which ``clustering_threshold`` controls). Macro
    step: River's shared-density reclustering, once per refresh. The number of
    clusters is what the density says; :func:`heaviest` keeps those holding at
    least ``min_share`` of the weight, at most ``max_segments`` (default
    ``2 * n_segments``), heaviest first as ids 0..k-1.

    Defaults are tuned on the generator's personas in the model's standardized
    features (:data:`~streamseg.features.registry.MODEL_FEATURES`): a radius
    of 2.5 z-units (a customer's 5th nearest neighbour is ~1.5 away), a
    half-life of 10,000 learns (``fading_factor`` is per learn) and cleanup
    every 500 learns. A smaller radius means more micro-clusters, each costing
    a distance per event.

    Parameters
    ----------
    feature_names, n_segments, warmup, seed, refresh_every
        As for every :class:`StreamSegmenter`.
    clustering_threshold
        Micro-cluster radius, in z-units (River's ``clustering_threshold``).
    fading_factor
        Per-learn decay of micro-cluster weights.
    cleanup_interval
        Learns between removals of faded micro-clusters.
    intersection_factor
        Shared density (relative to weight) that joins two micro-clusters.
    minimum_weight
        Weight a micro-cluster needs to count in the reclustering.
    min_share
        Share of the total weight a cluster needs to become a segment.
    max_segments
        At most this many segments (default ``2 * n_segments``).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> seg = DBSTREAMSegmenter(["a", "b"], warmup=40, refresh_every=100, clustering_threshold=0.5)
    >>> for i in range(200):
    ...     c = i % 2 * 10.0
    ...     seg.learn({"a": c + rng.gauss(0, 1), "b": c + rng.gauss(0, 1)})
    >>> seg.ready, seg.version, len(seg.centers())  # versions: warm-up end, learns 100 and 200
    (True, 3, 2)
    >>> lo, hi = seg.assign_many([{"a": 0.0, "b": 0.0}, {"a": 10.0, "b": 10.0}])
    >>> lo.segment_id != hi.segment_id
    True
    """

    kind = "dbstream"

    def __init__(self, feature_names: Sequence[str], *, clustering_threshold: float = 2.5,
                 fading_factor: float = 1e-4, cleanup_interval: int = 500,
                 intersection_factor: float = 0.3, minimum_weight: float = 10.0,
                 min_share: float = 0.02, max_segments: int | None = None, **base: Any) -> None:
        super().__init__(feature_names, **base)
        self.min_share = min_share
        self.max_segments = max_segments or 2 * self.n_segments
        self.model = cluster.DBSTREAM(
            clustering_threshold=clustering_threshold, fading_factor=fading_factor,
            cleanup_interval=cleanup_interval, intersection_factor=intersection_factor,
            minimum_weight=minimum_weight)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"clustering_threshold": 0.8, "minimum_weight": 2.0, "cleanup_interval": 50}

    def _model_params(self) -> dict[str, Any]:
        m = self.model
        return {"clustering_threshold": m.clustering_threshold, "fading_factor": m.fading_factor,
                "cleanup_interval": m.cleanup_interval, "intersection_factor": m.intersection_factor,
                "minimum_weight": m.minimum_weight, "min_share": self.min_share,
                "max_segments": self.max_segments}

    def _learn_scaled(self, z: Point) -> None:
        self.model.learn_one(z)

    def _macro_centers(self) -> np.ndarray:
        clusters = self.model.clusters  # River's reclustering runs here, only here
        ids = list(clusters)
        centers = self._matrix([clusters[i].center for i in ids])
        weights = np.array([clusters[i].weight for i in ids], dtype=float)
        return heaviest(centers, weights, min_share=self.min_share, cap=self.max_segments)

    def _model_state(self) -> dict[str, Any]:
        m = self.model
        return {
            "time_stamp": m._time_stamp,
            # dict order matters to River (cleanup and labelling walk it): JSON keeps it
            "micro_clusters": {str(i): {"center": mc.center, "last_update": mc.last_update,
                                        "weight": mc.weight}
                               for i, mc in m._micro_clusters.items()},
            "s": {str(i): {str(j): v for j, v in row.items()} for i, row in m.s.items()},
            "s_t": {str(i): {str(j): v for j, v in row.items()} for i, row in m.s_t.items()},
        }

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        m = self.model
        m._time_stamp = int(state["time_stamp"])
        m._micro_clusters = {
            int(i): DBSTREAMMicroCluster(x=dict(mc["center"]), last_update=mc["last_update"],
                                         weight=mc["weight"])
            for i, mc in state["micro_clusters"].items()}
        m.s = {int(i): _int_keys(row) for i, row in state["s"].items()}
        m.s_t = {int(i): _int_keys(row) for i, row in state["s_t"].items()}
        m.clustering_is_up_to_date = False


# --------------------------------------------------------------------------- CluStream


class VectorisedCluStream(cluster.CluStream):
    """River's CluStream with the closest-pair search of a micro-cluster merge done in numpy.

    When an event fits no micro-cluster and none is old enough to drop, River
    merges the two closest micro-clusters, comparing every pair in Python:
    ~1,200 distance calls for 50 micro-clusters, most of the learning cost on
    the model's features. Same rule, same tie-break (first pair in River's scan order).
    """

    def _maintain_micro_clusters(self, x: Point, w: float) -> None:
        threshold = self._timestamp - self.time_window
        for i, mc in self.micro_clusters.items():
            if mc.relevance_stamp(self.max_micro_clusters) < threshold:
                self.micro_clusters[i] = CluStreamMicroCluster(x=x, w=w, timestamp=self._timestamp)
                return
        ids = list(self.micro_clusters)
        keys = list(x)
        c = np.array([[self.micro_clusters[i].center[k] for k in keys] for i in ids])
        d2 = pairwise_sq_dist(c, c)
        d2[np.triu_indices(len(ids))] = np.inf  # pairs (a, b) with b < a, as River scans them
        a, b = np.unravel_index(int(np.argmin(d2)), d2.shape)
        self.micro_clusters[ids[a]] += self.micro_clusters[ids[b]]
        self.micro_clusters[ids[b]] = CluStreamMicroCluster(x=x, w=w, timestamp=self._timestamp)


class CluStreamSegmenter(StreamSegmenter):
    """River's CluStream micro-clusters; the macro step is a weighted k-means over them.

    Per event: the nearest of ``max_micro_clusters`` micro-clusters absorbs the
    event, or (when it does not fit) the two closest micro-clusters merge, a
    quadratic search (vectorised in :class:`VectorisedCluStream`); cost grows
    with ``max_micro_clusters``, 50 by default.
    River's own macro step (an unweighted, randomly started online k-means
    every ``time_gap`` events) is switched off; at each refresh, k-means++ (the
    first time) or the previous centres (afterwards, so ids stay put) start a
    few Lloyd iterations over the micro-cluster centres weighted by their
    sizes, as in the CluStream paper. ``n_segments`` centres, or as many as the
    global model's centres given to :meth:`set_centers`, which the next macro
    step starts from (so the workers' centres stay aligned with the model).

    River's radius is the *mean per-feature* deviation, not the RMS distance to
    the centre, so it shrinks ~sqrt(features)-fold against the distances it is
    compared with: ``micro_cluster_r_factor`` defaults to 8 (not River's 2) for
    the model's standardized features
    (:data:`~streamseg.features.registry.MODEL_FEATURES`), so events fit and
    merges stay rare enough.

    Parameters
    ----------
    feature_names, n_segments, warmup, seed, refresh_every
        As for every :class:`StreamSegmenter`.
    max_micro_clusters
        Micro-clusters kept (River's ``max_micro_clusters``).
    micro_cluster_r_factor
        An event fits a micro-cluster within this many of its radii.
    time_window
        Learns after which an unused micro-cluster may be replaced.

    Examples
    --------
    >>> seg = CluStreamSegmenter(["a"], n_segments=2, warmup=20, refresh_every=50,
    ...                          max_micro_clusters=10, seed=1)
    >>> for i in range(100):
    ...     seg.learn({"a": i % 2 * 10.0 + (i % 7) / 10})
    >>> seg.ready, sorted(round(c["a"]) for c in seg.centers().values())
    (True, [-1, 1])
    """

    kind = "clustream"
    NEVER = 2**62  # River runs its macro step when timestamp % time_gap == time_gap - 1

    def __init__(self, feature_names: Sequence[str], *, max_micro_clusters: int = 50,
                 micro_cluster_r_factor: int = 8, time_window: int = 1000,
                 **base: Any) -> None:
        super().__init__(feature_names, **base)
        self.model = VectorisedCluStream(
            n_macro_clusters=self.n_segments, max_micro_clusters=max_micro_clusters,
            micro_cluster_r_factor=micro_cluster_r_factor, time_window=time_window,
            time_gap=self.NEVER, seed=self.seed)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"max_micro_clusters": 20, "micro_cluster_r_factor": 3}

    def _model_params(self) -> dict[str, Any]:
        m = self.model
        return {"max_micro_clusters": m.max_micro_clusters,
                "micro_cluster_r_factor": m.micro_cluster_r_factor, "time_window": m.time_window}

    def _learn_scaled(self, z: Point) -> None:
        self.model.learn_one(z)

    def _macro_centers(self) -> np.ndarray:
        mcs = list(self.model.micro_clusters.values())
        if not mcs:
            return np.empty((0, len(self.feature_names)))
        points = self._matrix([mc.center for mc in mcs])
        weights = np.array([mc.weight for mc in mcs], dtype=float)
        if self._centers is not None and len(self._centers) <= len(mcs):
            start = self._centers
        else:
            k = min(self.n_segments, len(mcs))
            start = kmeans_plus_plus(points, k, np.random.default_rng(self.seed), weights)
        centers, _ = lloyd(points, start, weights)
        return centers

    def set_centers(self, centers: Mapping[int, Mapping[str, float]]) -> None:
        """Continue from these centres (the global model's): the next macro step starts from them."""
        new = self._matrix([centers[i] for i in sorted(centers)])
        if self._centers is None or not np.array_equal(new, self._centers):
            self._centers = new
            self._version += 1

    def _model_state(self) -> dict[str, Any]:
        m = self.model
        return {"timestamp": m._timestamp, "initialized": m._initialized,
                "micro_clusters": {str(i): _clustream_mc_state(mc)
                                   for i, mc in m.micro_clusters.items()}}

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        m = self.model
        m._timestamp = int(state["timestamp"])
        m._initialized = bool(state["initialized"])
        m.micro_clusters = {int(i): _clustream_mc(s) for i, s in state["micro_clusters"].items()}


def _var_state(v: stats.Var) -> list[float]:
    return [v.mean.n, v.mean._mean, v._S]


def _var(state: Sequence[float]) -> stats.Var:
    v = stats.Var()
    v.mean.n, v.mean._mean, v._S = (float(s) for s in state)
    return v


def _clustream_mc_state(mc: CluStreamMicroCluster) -> dict[str, Any]:
    return {"w": mc.w, "timestamp": mc.timestamp, "var_time": _var_state(mc.var_time),
            "var_x": {k: _var_state(v) for k, v in mc.var_x.items()}}


def _clustream_mc(state: Mapping[str, Any]) -> CluStreamMicroCluster:
    mc = CluStreamMicroCluster.__new__(CluStreamMicroCluster)
    mc.x = {}  # the first sample; River reads it only in __init__
    mc.w = state["w"]
    mc.timestamp = state["timestamp"]
    mc.var_time = _var(state["var_time"])
    mc.var_x = {k: _var(v) for k, v in state["var_x"].items()}
    mc._center = None
    return mc
