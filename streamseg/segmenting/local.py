"""This worker's own clusterer: what it learns between merges, and its summary for the leader.

Each worker learns from the customers it sees; every ``model_sync_s`` it
publishes a :class:`~streamseg.segmenting.model.LocalSummary` (centres, member
weights, scaler statistics and the clusterer's snapshot) that the leader
merges into the global model. When a global model arrives, local learning
continues from its centres, so the next merge averages like with like.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamseg.features.registry import MODEL_FEATURES
from streamseg.segmenting.base import Segmenter
from streamseg.segmenting.model import LocalSummary, SegmentModel


class LocalLearner:
    """A worker's River clusterer with the member weights the leader merges its centres by.

    >>> from streamseg.segmenting import factory
    >>> local = LocalLearner(factory.build("kmeans", MODEL_FEATURES, n_segments=2, seed=1), lambda: 0.0)
    >>> local.ready, local.summary("w1")  # nothing learned yet: nothing to merge
    (False, None)
    """

    def __init__(self, segmenter: Segmenter, wall_ms: Callable[[], float]) -> None:
        self._segmenter = segmenter
        self.wall_ms = wall_ms
        self.weights: dict[int, float] = {}  # members per local centre (recent ones weigh more)
        self.learned_since_sync = 0
        self.pulled_version = 0  # global version the local centres were last aligned to

    @property
    def segmenter(self) -> Segmenter:
        """The clusterer itself (read only: :meth:`restore` replaces it)."""
        return self._segmenter

    @property
    def ready(self) -> bool:
        """Past its warm-up: it has centres to assign with and to summarise."""
        return self._segmenter.ready

    def restore(self, segmenter: Segmenter) -> None:
        """Continue learning from a clusterer restored from this worker's last summary."""
        self._segmenter = segmenter

    def end_warmup(self) -> bool:
        """Seed the clusterer now from what it buffered (a small stream's first model); True if ready."""
        return self._segmenter.end_warmup()

    def learn(self, x: dict[str, float]) -> None:
        """One customer's model input."""
        self._segmenter.learn(x)

    def count(self, learned: list[dict[str, float]], model: SegmentModel | None) -> None:
        """Members per local centre (the weights the leader merges centres by)."""
        if model is not None and self.pulled_version == 0 and self.ready:
            self.pull(model)  # warm-up just ended under an existing global model
        if learned and self.ready:
            self.learned_since_sync += len(learned)
            for a in self._segmenter.assign_many(learned):
                self.weights[a.segment_id] = self.weights.get(a.segment_id, 0.0) + 1.0

    def summary(self, worker: str) -> LocalSummary | None:
        """This worker's clusterer as data; halves the member counts (recent ones weigh more)."""
        seg = self._segmenter
        if not seg.ready:
            return None
        centers = seg.centers()
        order = sorted(centers)
        feats = list(MODEL_FEATURES)
        mean, var, n = seg.scaler_stats()
        summary = LocalSummary(
            worker=worker, features=feats, mean=np.array([mean[f] for f in feats]),
            var=np.array([var[f] for f in feats]), n=n,
            centers=np.array([[centers[i][f] for f in feats] for i in order]).reshape(len(order), len(feats)),
            weights=np.array([max(self.weights.get(i, 0.0), 1.0) for i in order]),
            ts=self.wall_ms() / 1000.0, snapshot=seg.snapshot(),
            base_version=self.pulled_version, local_version=seg.version)
        self.weights = {k: v / 2 for k, v in self.weights.items()}
        self.learned_since_sync = 0
        return summary

    def pull(self, model: SegmentModel) -> None:
        """Local learning continues from the global centres (clusterers that allow it).

        Keeps every worker's centres aligned with the shared model, so the next
        merge averages like with like.
        """
        seg = self._segmenter
        set_centers = getattr(seg, "set_centers", None)
        if set_centers is None or not seg.ready:
            return
        mean, var, _ = seg.scaler_stats()
        local = model.rescaled(np.array([mean[f] for f in model.features]),
                               np.array([var[f] for f in model.features]))
        set_centers({i: dict(zip(model.features, map(float, c), strict=True))
                     for i, c in enumerate(local)})
        self.weights = dict(enumerate(map(float, model.weights)))
        self.pulled_version = model.version
