"""River's online KMeans behind the :class:`Segmenter` protocol.

Features are standardized online by River's ``StandardScaler``. River's KMeans
starts from random centres, which leaves some centres dead on skewed customer
data; so the first ``warmup`` vectors are buffered and the centres are seeded by
k-means++ plus a few Lloyd iterations on them, after which River learns one
vector at a time, moving the nearest centre by ``halflife`` of the way. The
default 0.01 was measured on planted personas (``load_tests/quality_bench.py``):
River's customary 0.05 makes centres jitter, moving customers at segment
boundaries (16% more membership flips, 99.63% instead of 99.87% of ids kept on
a stationary stream; 87% more flips before the anti-flapping margin), for no
better ARI; much smaller steps (0.005) sometimes stayed stuck with two personas
merged. Assignment is a vectorised nearest-centre search.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import cluster, preprocessing

from streamseg.segmenting.base import Assignment, Vector
from streamseg.segmenting.vectors import (
    kmeans_plus_plus,
    lloyd,
    load_scaler,
    nearest,
    scaled_matrix,
    scaled_one,
    scaler_state,
)


class RiverKMeansSegmenter:
    """Online k-means (River's ``KMeans``) on standardized features, seeded by a batch warm-up.

    The default clusterer: cheap per event (one centre moves), always
    ``n_segments`` centres whose ids are River's centre indices, and it can
    continue from the global model's centres (:meth:`set_centers`).

    Parameters
    ----------
    feature_names
        The features of every vector, in the order centres are written.
    n_segments
        Number of centres (segments).
    halflife
        How far the nearest centre moves towards each learned vector (River's
        ``halflife``); see the module notes for why 0.01.
    warmup
        Vectors buffered before the centres are seeded by k-means++ and Lloyd;
        until then the segmenter is not ``ready``.
    seed
        Seed of the k-means++ seeding and of River's KMeans.
    version_every
        The version goes up once every this many learns after the warm-up.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> seg = RiverKMeansSegmenter(["a", "b"], n_segments=2, warmup=50, seed=1)
    >>> for i in range(200):
    ...     c = i % 2 * 10.0
    ...     seg.learn({"a": c + rng.gauss(0, 1), "b": c + rng.gauss(0, 1)})
    >>> seg.ready, seg.version
    (True, 1)
    >>> lo, hi = seg.assign_many([{"a": 0.0, "b": 0.0}, {"a": 10.0, "b": 10.0}])
    >>> lo.segment_id != hi.segment_id
    True
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        n_segments: int = 6,
        halflife: float = 0.01,
        warmup: int = 500,
        seed: int = 42,
        version_every: int = 50_000,
    ) -> None:
        self.feature_names = list(feature_names)
        self.n_segments = n_segments
        self.warmup = warmup
        self.seed = seed
        self.version_every = version_every
        self.scaler = preprocessing.StandardScaler()
        self.kmeans = cluster.KMeans(n_clusters=n_segments, halflife=halflife, seed=seed)
        self._buffer: list[Vector] = []
        self._version = 0
        self._learned = 0
        self._centers: np.ndarray | None = None  # cache for vectorised assignment

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Hyperparameters for the shared segmenter suite's small blobs (the defaults suit)."""
        return {}

    # -- protocol -----------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._version > 0

    @property
    def version(self) -> int:
        return self._version

    @property
    def learned(self) -> int:
        return self._learned

    def learn(self, x: Vector) -> None:
        self.scaler.learn_one(dict(x))
        self._learned += 1
        if not self.ready:
            self._buffer.append(x)
            if len(self._buffer) >= self.warmup:
                self._seed_centers()
            return
        learn_kmeans(self.kmeans, scaled_one(self.scaler, x))
        self._centers = None
        if self._learned % self.version_every == 0:
            self._version += 1

    def end_warmup(self) -> bool:
        if not self.ready and len(self._buffer) >= self.n_segments:
            self._seed_centers()
        return self.ready

    def assign_many(self, xs: Sequence[Vector]) -> list[Assignment]:
        if not self.ready:
            raise RuntimeError("segmenter is still warming up; check .ready first")
        if not xs:
            return []
        best, dist = nearest(self._scale(xs), self._center_matrix())
        return [Assignment(int(b), float(d)) for b, d in zip(best, dist, strict=True)]

    def centers(self) -> dict[int, dict[str, float]]:
        return {
            int(i): {f: float(self.kmeans.centers[i][f]) for f in self.feature_names}
            for i in self.kmeans.centers
        }

    def scaler_stats(self) -> tuple[dict[str, float], dict[str, float], float]:
        n = max(self.scaler.counts.values(), default=0)
        return ({f: float(self.scaler.means[f]) for f in self.feature_names},
                {f: float(self.scaler.vars[f]) for f in self.feature_names}, float(n))

    def set_centers(self, centers: dict[int, dict[str, float]]) -> None:
        """Continue learning from these centres (the global model's, in this scale).

        Their number becomes this clusterer's k (``STREAMSEG_N_SEGMENTS=auto`` changes it),
        so a snapshot restores as many centres as it holds.
        """
        self.n_segments = self.kmeans.n_clusters = len(centers)
        self.kmeans.centers.clear()
        for i, c in centers.items():
            self.kmeans.centers[i] = collections.defaultdict(float, c)
        self._centers = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "kmeans",
            "version": self._version,
            "learned": self._learned,
            "features": self.feature_names,
            "params": {"n_segments": self.n_segments, "halflife": self.kmeans.halflife,
                       "warmup": self.warmup, "seed": self.seed,
                       "version_every": self.version_every},
            "scaler": scaler_state(self.scaler),
            "centers": {str(k): v for k, v in self.centers().items()} if self.ready else {},
        }

    @classmethod
    def restore(cls, snap: dict[str, Any], **kw: Any) -> RiverKMeansSegmenter:
        # explicit arguments win over the snapshot; older snapshots lack n_segments
        params = {"n_segments": max(len(snap["centers"]), 2), **snap.get("params", {}), **kw}
        seg = cls(snap["features"], **params)
        load_scaler(seg.scaler, snap["scaler"])
        for k, center in snap["centers"].items():
            seg.kmeans.centers[int(k)] = collections.defaultdict(float, center)
        seg._version = int(snap["version"])
        seg._learned = int(snap["learned"])
        return seg

    # -- internals ------------------------------------------------------------
    def _scale(self, xs: Sequence[Vector]) -> np.ndarray:
        return scaled_matrix(self.scaler, self.feature_names, xs)

    def _center_matrix(self) -> np.ndarray:
        if self._centers is None:
            c = self.kmeans.centers
            self._centers = np.array([[c[i][f] for f in self.feature_names] for i in sorted(c)])
        return self._centers

    def _seed_centers(self) -> None:
        z = self._scale(self._buffer)
        centers, _ = lloyd(z, kmeans_plus_plus(z, self.n_segments, np.random.default_rng(self.seed)))
        for k in range(self.n_segments):
            self.kmeans.centers[k] = collections.defaultdict(
                float, {f: float(v) for f, v in zip(self.feature_names, centers[k], strict=True)}
            )
        self._buffer.clear()
        self._centers = None
        self._version = 1


def learn_kmeans(kmeans: cluster.KMeans, z: dict[str, float]) -> None:
    """``kmeans.learn_one(z)``: the nearest centre moves towards ``z``, found without River's
    per-centre set of keys and ``abs() ** p`` per feature (a third of a batch's learning).

    For p=2 and centres over ``z``'s features (always, past the warm-up) the nearest is
    River's up to rounding (``math.dist`` rounds once; River sums squares in a set's
    order, which varies with the hash seed); else River's own.
    """
    centers = kmeans.centers
    keys, values = list(z), list(z.values())
    best: int | None = None
    best_d = math.inf
    for c, center in centers.items() if kmeans.p == 2 else ():
        if center.keys() != z.keys():
            break
        d = math.dist(list(map(center.__getitem__, keys)), values)
        if best is None or d < best_d:  # min()'s rule: the first of equals
            best, best_d = c, d
    else:
        if best is not None:
            center = centers[best]
            for k, v in z.items():
                center[k] += kmeans.halflife * (v - center[k])
            return
    kmeans.learn_one(z)  # p != 2, no centres, or a centre over other features: River's own
