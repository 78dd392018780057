"""The global segment model: stable ids, merging workers' models, assignment with a margin.

Every worker learns its own clusterer (any :class:`Segmenter`) and now and then
summarises it as a :class:`LocalSummary`: its scaler statistics and centres.
The leader merges all summaries into one :class:`SegmentModel`, versioned, whose
centres carry **stable segment ids**: new centres are matched to the previous
version's by Hungarian assignment on centre distance (scipy's
``linear_sum_assignment``), so a segment keeps its id while it describes the
same customers. A pair is matched when the centre moved less than
``max_move`` standardized units, or when old and new are each other's nearest
(everyone moved together, e.g. after a seasonal shift). Unmatched centres are *born* (or *split* from the segment they
came from), unmatched old ones are *merged* into their nearest survivor or
*retired*. Every worker assigns customers with the latest global model, so a
customer gets the same id whichever worker handles them.

Everything here is plain data (numpy arrays in memory, JSON on the wire):
nothing is ever unpickled.

>>> import numpy as np
>>> prev = SegmentModel.first(["a", "b"], np.zeros(2), np.ones(2),
...     np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([10.0, 10.0]))
>>> prev.ids, prev.version
([0, 1], 1)
>>> nxt, events = prev.evolve(np.zeros(2), np.ones(2),
...     np.array([[5.1, 5.0], [0.1, 0.0]]), np.array([10.0, 10.0]))  # same centres, reordered
>>> nxt.ids, [(e.segment_id, e.status) for e in events]
([1, 0], [])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamseg.segmenting.vectors import (
    kmeans_plus_plus,
    lloyd,
    nearest,
    pairwise_sq_dist,
    signal_var,
)

MATCH_MAX_MOVE = 1.5  # standardized units a centre may move and keep its id
RELATE_MAX_DIST = 3.0  # a vanished/new centre this close to another counts as merged/split
MIN_MATERIAL_MOVE = 0.05  # smaller centre moves do not make a new model version


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """One change in the segment set between two versions."""

    segment_id: int
    status: str  # born | split | merged | retired
    related: tuple[int, ...] = ()


@dataclass(slots=True)
class LocalSummary:
    """What one worker's clusterer knows: scaler statistics and centres in its own scale."""

    worker: str
    features: list[str]
    mean: np.ndarray
    var: np.ndarray
    n: float  # vectors the scaler has seen
    centers: np.ndarray  # (k, d) in the worker's standardized units
    weights: np.ndarray  # (k,) recent members per centre
    ts: float  # wall-clock seconds when summarised
    snapshot: dict[str, Any] = field(default_factory=dict)  # the clusterer itself, for warm restarts
    base_version: int = 0  # the global model version its centres started from
    local_version: int = 0  # the clusterer's own version (changes when its centres do)

    def to_json(self) -> dict[str, Any]:
        return {"worker": self.worker, "features": self.features, "mean": self.mean.tolist(),
                "var": self.var.tolist(), "n": self.n, "centers": self.centers.tolist(),
                "weights": self.weights.tolist(), "ts": self.ts, "snapshot": self.snapshot,
                "base_version": self.base_version, "local_version": self.local_version}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LocalSummary:
        d = len(doc["features"])
        return cls(worker=str(doc["worker"]), features=list(doc["features"]),
                   mean=np.asarray(doc["mean"], float), var=np.asarray(doc["var"], float),
                   n=float(doc["n"]), centers=np.asarray(doc["centers"], float).reshape(-1, d),
                   weights=np.asarray(doc["weights"], float), ts=float(doc["ts"]),
                   snapshot=dict(doc.get("snapshot") or {}),
                   base_version=int(doc.get("base_version", 0)),
                   local_version=int(doc.get("local_version", 0)))

    def raw_centers(self) -> np.ndarray:
        """Centres back in model-input units (before scaling)."""
        return self.centers * _std(self.var) + self.mean


@dataclass(slots=True)
class SegmentModel:
    """One global, versioned model: scaler plus centres keyed by stable segment id.

    The leader builds it (:meth:`first`, then :meth:`evolve` from each merge or
    :meth:`refine`) and publishes it as JSON; every worker assigns customers
    with it (:meth:`assign`), so an id means the same segment everywhere.

    Parameters
    ----------
    version
        Goes up by one with every material change of the centres.
    features
        The model's input features, in the order of the centres' columns.
    mean, var
        The pooled scaler: per-feature mean and population variance.
    ids
        The stable segment id of each centre (row of ``centers``).
    centers
        ``(k, d)`` centres, standardized with ``mean`` and ``var``.
    weights
        ``(k,)`` members (or merged weight) behind each centre.
    next_id
        The id the next born segment gets; ids are never reused.
    retired
        Ids no longer in the model, each ``"merged"`` or ``"retired"``.
    names
        Readable, unique, stable segment names by id (set by the leader).

    Examples
    --------
    >>> m = SegmentModel.first(["a"], np.array([10.0]), np.array([4.0]),
    ...                        np.array([[-1.0], [1.0]]), np.array([5.0, 5.0]))
    >>> m.assign([{"a": 7.0}, {"a": 13.0}], [None, None])[:2]  # z-scores -1.5 and 1.5
    ([0, 1], array([0.5, 0.5]))
    """

    version: int
    features: list[str]
    mean: np.ndarray
    var: np.ndarray
    ids: list[int]
    centers: np.ndarray  # (k, d) standardized with mean/var above
    weights: np.ndarray
    next_id: int
    retired: dict[int, str] = field(default_factory=dict)  # id -> merged|retired, kept for the catalog
    names: dict[int, str] = field(default_factory=dict)  # readable, unique, stable (set by the leader)

    # -- construction -----------------------------------------------------------
    @classmethod
    def first(cls, features: Sequence[str], mean: np.ndarray, var: np.ndarray,
              centers: np.ndarray, weights: np.ndarray) -> SegmentModel:
        k = len(centers)
        return cls(1, list(features), mean, var, list(range(k)), centers, weights, k)

    def evolve(self, mean: np.ndarray, var: np.ndarray, centers: np.ndarray,
               weights: np.ndarray, *, max_move: float = MATCH_MAX_MOVE,
               min_move: float = MIN_MATERIAL_MOVE) -> tuple[SegmentModel, list[Lifecycle]]:
        """The next version from new centres (scaled by ``mean``/``var``), with stable ids.

        Returns ``self`` unchanged (and no events) when nothing moved materially.
        """
        old = self.rescaled(mean, var)  # previous centres in the new scale
        cost = np.sqrt(pairwise_sq_dist(old, centers)) if len(old) else np.zeros((0, len(centers)))
        rows, cols = linear_sum_assignment(cost) if cost.size else (np.array([], int), np.array([], int))
        new_ids: list[int | None] = [None] * len(centers)
        matched_old: dict[int, int] = {}  # old row -> new col
        for r, c in zip(rows, cols, strict=True):
            # near enough, or each other's nearest (the whole population moved, e.g. a season)
            mutual = int(cost[r].argmin()) == c and int(cost[:, c].argmin()) == r
            if cost[r, c] <= max_move or mutual:
                new_ids[c] = self.ids[r]
                matched_old[int(r)] = int(c)
        events: list[Lifecycle] = []
        next_id = self.next_id
        for c in range(len(centers)):
            if new_ids[c] is not None:
                continue
            new_ids[c] = next_id
            near = int(cost[:, c].argmin()) if len(old) else -1
            if near >= 0 and near in matched_old and cost[near, c] <= RELATE_MAX_DIST:
                events.append(Lifecycle(next_id, "split", (self.ids[near],)))
            else:
                events.append(Lifecycle(next_id, "born"))
            next_id += 1
        ids = [int(i) for i in new_ids if i is not None]
        retired = dict(self.retired)
        for r, sid in enumerate(self.ids):
            if r in matched_old:
                continue
            near = int(cost[r].argmin()) if len(centers) else -1
            if near >= 0 and cost[r, near] <= RELATE_MAX_DIST:
                events.append(Lifecycle(sid, "merged", (ids[near],)))
                retired[sid] = "merged"
            else:
                events.append(Lifecycle(sid, "retired"))
                retired[sid] = "retired"
        moved = max((float(cost[r, c]) for r, c in matched_old.items()), default=0.0)
        if not events and moved < min_move:
            return self, []
        return SegmentModel(self.version + 1, self.features, mean, var, ids, centers, weights,
                            next_id, retired, dict(self.names)), events

    def refine(self, rows: np.ndarray, *, restarts: int = 4, better: float = 0.05,
               min_share: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Re-fit the centres on a sample of current customers (batch k-means).

        Online learning sees customers mid-way (clicks before orders, a first
        visit before the tenth), so centres can lag, merge or die; this batch
        step on whole current states pulls them back to the population as it
        is now. Lloyd runs from the current centres. Only if that leaves a
        segment nearly empty (under ``min_share`` of the sample: a dead or
        degenerate centre) are ``restarts`` k-means++ seeds tried, and one
        replaces the warm solution only if its inertia is lower by more than
        ``better``: a healthy model is never reshuffled by a random restart, so
        a stationary population keeps a stationary segment mix.
        Returns centres and member counts (to be versioned with :meth:`evolve`).
        """
        z = self.scale(rows)
        k = len(self.centers)
        rng = np.random.default_rng(seed)
        best, best_inertia = _refit(z, self.centers, rng)
        counts = _counts(z, best)
        if counts.min() < min_share * len(z):
            for _ in range(restarts):
                cand, inertia = _refit(z, kmeans_plus_plus(z, k, rng), rng)
                if inertia < (1.0 - better) * best_inertia:
                    best, best_inertia = cand, inertia
            counts = _counts(z, best)
        return best, counts

    def rescaled(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        """This model's centres expressed in another scale."""
        raw = self.centers * _std(self.var) + self.mean
        return np.where(var > 0, (raw - mean) / _std(var), 0.0)

    # -- use ----------------------------------------------------------------------
    def scale(self, rows: np.ndarray) -> np.ndarray:
        # as River's StandardScaler: a feature with no variance scales to 0
        return np.where(self.var > 0, (rows - self.mean) / _std(self.var), 0.0)

    def matrix(self, xs: Sequence[dict[str, float]]) -> np.ndarray:
        return np.array([[x[f] for f in self.features] for x in xs], dtype=float).reshape(
            len(xs), len(self.features))

    def assign(self, xs: Sequence[dict[str, float]], current: Sequence[int | None],
               margin: float = 0.0) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Stable id and distance per vector; plus the scaled vectors.

        A customer leaves its current segment only if the nearest centre is closer
        than ``(1 - margin)`` times the distance to its current one: customers near
        a boundary do not flap back and forth.
        """
        z = self.scale(self.matrix(xs))
        d = np.sqrt(pairwise_sq_dist(z, self.centers))
        best = d.argmin(axis=1)
        pos = {sid: i for i, sid in enumerate(self.ids)}
        out_ids: list[int] = []
        out_d = np.empty(len(xs))
        for n, (b, cur) in enumerate(zip(best, current, strict=True)):
            col = int(b)
            if margin > 0 and cur is not None and cur in pos and pos[cur] != col:
                keep = pos[cur]
                if d[n, col] >= (1.0 - margin) * d[n, keep]:
                    col = keep
            out_ids.append(self.ids[col])
            out_d[n] = d[n, col]
        return out_ids, out_d, z

    def nearest(self, rows: np.ndarray, features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centre's stable id and distance per raw row whose columns are ``features``
        (no anti-flapping margin: no previous segment). The drift monitor re-scores
        samples of two windows with this, so both are read with the same segments."""
        order = [list(features).index(f) for f in self.features]
        z = self.scale(np.asarray(rows, dtype=float).reshape(-1, len(features))[:, order])
        best, dist = nearest(z, self.centers)
        return np.asarray(self.ids, dtype=np.int64)[best], dist

    def center_of(self, segment_id: int) -> np.ndarray | None:
        try:
            return self.centers[self.ids.index(segment_id)]
        except ValueError:
            return None

    def centers_by_id(self) -> dict[int, dict[str, float]]:
        """Centres in standardized units, by stable id (what names and drift read)."""
        return {sid: dict(zip(self.features, map(float, c), strict=True))
                for sid, c in zip(self.ids, self.centers, strict=True)}

    def raw_center(self, segment_id: int) -> np.ndarray | None:
        c = self.center_of(segment_id)
        return None if c is None else c * _std(self.var) + self.mean

    # -- wire ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "features": self.features, "mean": self.mean.tolist(),
                "var": self.var.tolist(), "ids": self.ids, "centers": self.centers.tolist(),
                "weights": self.weights.tolist(), "next_id": self.next_id,
                "retired": {str(k): v for k, v in self.retired.items()},
                "names": {str(k): v for k, v in self.names.items()}}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SegmentModel:
        d = len(doc["features"])
        return cls(int(doc["version"]), list(doc["features"]), np.asarray(doc["mean"], float),
                   np.asarray(doc["var"], float), [int(i) for i in doc["ids"]],
                   np.asarray(doc["centers"], float).reshape(-1, d),
                   np.asarray(doc["weights"], float), int(doc["next_id"]),
                   {int(k): str(v) for k, v in (doc.get("retired") or {}).items()},
                   {int(k): str(v) for k, v in (doc.get("names") or {}).items()})


def merge(summaries: Sequence[LocalSummary], k: int, previous: SegmentModel | None,
          *, iterations: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pool several workers' models into one scale and ``k`` centres, weighted by members.

    Scalers are pooled exactly (parallel mean/variance); each worker's centres
    are brought back to model-input units and re-standardized in the pooled
    scale; then weighted k-means (:func:`~streamseg.segmenting.vectors.lloyd`,
    seeded from the previous global centres when there are exactly ``k``)
    reduces the pooled centres to ``k``. With a single worker
    the centres pass through unchanged.
    """
    if not summaries:
        raise ValueError("nothing to merge")
    mean, var = pooled_scaler(summaries)
    pts = np.vstack([np.where(var > 0, (s.raw_centers() - mean) / _std(var), 0.0) for s in summaries])
    w = np.concatenate([np.maximum(s.weights, 1e-9) for s in summaries])
    if len(summaries) == 1 or len(pts) <= k:
        return mean, var, pts, w
    if previous is not None and len(previous.ids) == k:
        start = previous.rescaled(mean, var)
    else:
        start = pts[np.argsort(-w)[:k]]  # heaviest centres first: deterministic and sensible
    centers, labels = lloyd(pts, start, w, iterations=iterations, rng=np.random.default_rng(seed))
    weights = np.array([w[labels == j].sum() for j in range(k)])
    return mean, var, centers, weights


def _refit(z: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Batch k-means of ``z`` from ``start``: the centres and their inertia."""
    centers, _ = lloyd(z, start, iterations=20, rng=rng)
    return centers, float(pairwise_sq_dist(z, centers).min(1).sum())


def _counts(z: np.ndarray, centers: np.ndarray) -> np.ndarray:
    labels = pairwise_sq_dist(z, centers).argmin(1)
    return np.bincount(labels, minlength=len(centers)).astype(float)


def pooled_scaler(summaries: Sequence[LocalSummary]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance of all workers' inputs together."""
    n = np.array([max(s.n, 1e-9) for s in summaries])
    means = np.vstack([s.mean for s in summaries])
    vars_ = np.vstack([s.var for s in summaries])
    total = n.sum()
    mean = (n[:, None] * means).sum(0) / total
    var = (n[:, None] * (vars_ + (means - mean) ** 2)).sum(0) / total
    return mean, signal_var(mean, var)  # equal means pool to a rounding-level variance


def _std(var: np.ndarray) -> np.ndarray:
    return np.sqrt(np.where(var > 0, var, 1.0))
