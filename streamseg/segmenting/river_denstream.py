"""River's DenStream behind the :class:`Segmenter` protocol, with three of its bugs fixed.

DenStream keeps potential (dense) and outlier micro-clusters online and groups
the potential ones by DBSCAN on demand. River 0.26.1's version has bugs that
matter on standardized multi-feature data, so :class:`FixedDenStream` keeps
River's online loop and pruning and replaces the parts that are wrong:

* the micro-cluster radius used the norm of the vector of squared sums instead
  of its sum, so it shrank to 0 away from the origin and every event was
  absorbed by its nearest micro-cluster (river#2004, fixed after 0.26.1);
* new micro-clusters were keyed ``len(dict)``, which after a pruning overwrites
  a live micro-cluster;
* ``predict_one`` expanded clusters only one hop (river#2006) and merged
  micro-clusters through a shallow copy that mutates them, on every call.

The offline DBSCAN is therefore done here, vectorised, once per refresh
(:func:`dbscan_macro_clusters`), never per event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from river import cluster
from river.cluster.denstream import DenStreamMicroCluster

from streamseg.segmenting.river_stream import Point, StreamSegmenter, heaviest
from streamseg.segmenting.vectors import pairwise_sq_dist


class FixedMicroCluster(DenStreamMicroCluster):
    """A DenStream micro-cluster whose radius is the RMS distance of its points to the centre."""

    __slots__ = ()

    def calc_radius(self, timestamp: float) -> float:
        n = self.N
        diff = sum(self.squared_sum[k] / n - (ls / n) ** 2 for k, ls in self.linear_sum.items())
        return math.sqrt(diff) if diff > 0 else 0.0

    def radius_with(self, x: Mapping[str, float]) -> float:
        n = self.N + 1
        diff = 0.0
        for k, ls in self.linear_sum.items():
            v = x.get(k, 0.0)
            diff += (self.squared_sum[k] + v * v) / n - ((ls + v) / n) ** 2
        return math.sqrt(diff) if diff > 0 else 0.0


class FixedDenStream(cluster.DenStream):
    """River's DenStream with :class:`FixedMicroCluster` and collision-free micro-cluster keys."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.next_key = 0

    def _new_mc(self, x: Mapping[str, float]) -> FixedMicroCluster:
        return FixedMicroCluster(x=x, timestamp=self.timestamp, decaying_factor=self.decaying_factor)

    def _key(self) -> int:
        self.next_key += 1
        return self.next_key - 1

    def _merge(self, point: Mapping[str, float]) -> None:  # River's rules, fixed keys
        if self.p_micro_clusters:
            k = self._get_closest_cluster_key(point, self.p_micro_clusters)
            if self.p_micro_clusters[k].radius_with(point) <= self.epsilon:
                self.p_micro_clusters[k].insert(point, self.timestamp)
                return
        if self.o_micro_clusters:
            k = self._get_closest_cluster_key(point, self.o_micro_clusters)
            omc = self.o_micro_clusters[k]
            if omc.radius_with(point) <= self.epsilon:
                omc.insert(point, self.timestamp)
                if omc.calc_weight(self.timestamp) > self.mu * self.beta:  # grown dense
                    del self.o_micro_clusters[k]
                    self.p_micro_clusters[self._key()] = omc
                return
        self.o_micro_clusters[self._key()] = self._new_mc(point)

    def _initial_dbscan(self) -> None:
        for item in self._init_buffer:
            if item.covered:
                continue
            item.covered = True
            neighbourhood = self._get_neighborhood_ids(item)
            if len(neighbourhood) > self.mu:
                mc = self._new_mc(item.x)
                self._expand_cluster(mc, neighbourhood)
                self.p_micro_clusters[self._key()] = mc
            else:
                item.covered = False


def dbscan_macro_clusters(
    centers: np.ndarray, radii: np.ndarray, weights: np.ndarray, *, mu: float, epsilon: float
) -> np.ndarray:
    """A cluster label per potential micro-cluster (DenStream's offline DBSCAN).

    Two micro-clusters are directly density-reachable when both weigh more than
    ``mu``, their centres are closer than ``2 * epsilon`` and no further apart
    than their radii added; clusters are the connected components. A
    micro-cluster reaching nobody is a cluster of its own.

    >>> c = np.array([[0.0], [0.25], [0.5], [5.0]])
    >>> dbscan_macro_clusters(c, np.full(4, 0.2), np.full(4, 10.0), mu=2, epsilon=0.4).tolist()
    [0, 0, 0, 1]
    """
    n = len(centers)
    dist = np.sqrt(pairwise_sq_dist(centers, centers))
    core = weights > mu
    linked = (core[:, None] & core[None, :] & (dist < 2 * epsilon)
              & (dist <= radii[:, None] + radii[None, :]))
    labels = np.full(n, -1)
    for start in range(n):
        if labels[start] >= 0:
            continue
        label = labels.max() + 1
        labels[start] = label
        stack = [start]
        while stack:
            for j in np.flatnonzero(linked[stack.pop()] & (labels < 0)):
                labels[j] = label
                stack.append(int(j))
    return labels


class DenStreamSegmenter(StreamSegmenter):
    """DenStream (:class:`FixedDenStream`): density-based, robust to outliers.

    Per event: the nearest potential, then outlier, micro-cluster absorbs the
    event if its radius stays within ``epsilon``. River's initial DBSCAN runs on
    the warm-up buffer (``n_samples_init`` is ``warmup``). Macro step, once per
    refresh: :func:`dbscan_macro_clusters` over the potential micro-clusters,
    then :func:`~streamseg.segmenting.river_stream.heaviest` keeps clusters with
    at least ``min_share`` of the weight, at most ``max_segments`` (default
    ``2 * n_segments``), heaviest first.

    Defaults are tuned on the generator's personas in the model's standardized
    features (:data:`~streamseg.features.registry.MODEL_FEATURES`): micro-clusters of at most 1.1 z-units RMS radius, dense (core) above a
    weight of 10, time advancing one unit per 100 learns with a 100-unit
    half-life (``decaying_factor`` 0.01), so a micro-cluster fades over ~10,000
    learns. Larger ``epsilon`` chains the personas into fewer clusters (one,
    from 1.5 on) and made results depend on the event order; smaller multiplies
    micro-clusters and the per-event cost.

    Parameters
    ----------
    feature_names, n_segments, warmup, seed, refresh_every
        As for every :class:`~streamseg.segmenting.river_stream.StreamSegmenter`;
        ``warmup`` is also River's ``n_samples_init``.
    epsilon
        Largest RMS radius of a micro-cluster, in z-units.
    mu
        Weight above which a micro-cluster is dense (a core).
    beta
        Share of ``mu`` at which an outlier micro-cluster becomes a potential one.
    decaying_factor
        Decay of micro-cluster weights per time unit.
    stream_speed
        Learns per time unit.
    min_share, max_segments
        Which clusters become segments, as for
        :class:`~streamseg.segmenting.river_stream.DBSTREAMSegmenter`.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> seg = DenStreamSegmenter(["a", "b"], warmup=40, refresh_every=100, epsilon=0.5)
    >>> for i in range(200):
    ...     c = i % 2 * 10.0
    ...     seg.learn({"a": c + rng.gauss(0, 1), "b": c + rng.gauss(0, 1)})
    >>> seg.ready, len(seg.centers())
    (True, 2)
    """

    kind = "denstream"

    def __init__(self, feature_names: Sequence[str], *, epsilon: float = 1.1, mu: float = 10.0,
                 beta: float = 0.5, decaying_factor: float = 0.01, stream_speed: int = 100,
                 min_share: float = 0.02, max_segments: int | None = None, **base: Any) -> None:
        super().__init__(feature_names, **base)
        self.min_share = min_share
        self.max_segments = max_segments or 2 * self.n_segments
        self.model = FixedDenStream(decaying_factor=decaying_factor, beta=beta, mu=mu,
                                    epsilon=epsilon, n_samples_init=self.warmup,
                                    stream_speed=stream_speed)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"epsilon": 0.4, "mu": 3.0}

    def _model_params(self) -> dict[str, Any]:
        m = self.model
        return {"epsilon": m.epsilon, "mu": m.mu, "beta": m.beta,
                "decaying_factor": m.decaying_factor, "stream_speed": m.stream_speed,
                "min_share": self.min_share, "max_segments": self.max_segments}

    def _learn_scaled(self, z: Point) -> None:
        self.model.learn_one(z)

    def _macro_centers(self) -> np.ndarray:
        mcs = list(self.model.p_micro_clusters.values())
        if not mcs:
            return np.empty((0, len(self.feature_names)))
        t = self.model.timestamp
        linear = self._matrix([mc.linear_sum for mc in mcs])
        counts = np.array([mc.N for mc in mcs], dtype=float)
        weights = np.array([mc.calc_weight(t) for mc in mcs])
        radii = np.array([mc.calc_radius(t) for mc in mcs])
        labels = dbscan_macro_clusters(linear / counts[:, None], radii, weights,
                                       mu=self.model.mu, epsilon=self.model.epsilon)
        k = labels.max() + 1
        sums = np.zeros((k, linear.shape[1]))
        np.add.at(sums, labels, linear)
        centers = sums / np.bincount(labels, weights=counts)[:, None]
        return heaviest(centers, np.bincount(labels, weights=weights), min_share=self.min_share,
                        cap=self.max_segments)

    def _model_state(self) -> dict[str, Any]:
        m = self.model
        return {"timestamp": m.timestamp, "initialized": m.initialized,
                "n_samples_seen": m._n_samples_seen, "next_key": m.next_key,
                "p": {str(k): _mc_state(mc) for k, mc in m.p_micro_clusters.items()},
                "o": {str(k): _mc_state(mc) for k, mc in m.o_micro_clusters.items()}}

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        m = self.model
        m.timestamp = int(state["timestamp"])
        m.initialized = bool(state["initialized"])
        if m.initialized and hasattr(m, "_init_buffer"):
            del m._init_buffer  # as River does once it has initialised
        m._n_samples_seen = int(state["n_samples_seen"])
        m.next_key = int(state["next_key"])
        m.p_micro_clusters = {int(k): self._mc(s) for k, s in state["p"].items()}
        m.o_micro_clusters = {int(k): self._mc(s) for k, s in state["o"].items()}

    def _mc(self, state: Mapping[str, Any]) -> FixedMicroCluster:
        mc = FixedMicroCluster(x={}, timestamp=state["creation_time"],
                               decaying_factor=self.model.decaying_factor)
        mc.last_edit_time = state["last_edit_time"]
        mc.N = state["N"]
        mc.linear_sum = dict(state["linear_sum"])
        mc.squared_sum = dict(state["squared_sum"])
        return mc


def _mc_state(mc: DenStreamMicroCluster) -> dict[str, Any]:
    return {"creation_time": mc.creation_time, "last_edit_time": mc.last_edit_time, "N": mc.N,
            "linear_sum": mc.linear_sum, "squared_sum": mc.squared_sum}
