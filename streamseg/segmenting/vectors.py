"""Numeric helpers every segmenter shares: online scaling as data, distances, k-means.

The segmenters learn through River's ``StandardScaler`` one dict at a time, but
assign whole batches at once; these helpers turn a batch of dicts into one
matrix of z-scores with the scaler's current statistics, so both paths agree.

>>> from river import preprocessing
>>> sc = preprocessing.StandardScaler()
>>> for v in (1.0, 3.0):
...     sc.learn_one({"a": v, "b": 5.0})
>>> scaled_matrix(sc, ["a", "b"], [{"a": 3.0, "b": 7.0}]).tolist()  # "b" has no variance yet
[[1.0, 0.0]]
>>> signal_var(np.array([0.1, 0.1]), np.array([1.9e-34, 0.01])).tolist()  # rounding is no signal
[0.0, 0.01]
>>> nearest(np.array([[0.0], [9.0]]), np.array([[1.0], [5.0]]))
(array([0, 1]), array([1., 4.]))
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # River's preprocessing loads pandas and scikit-learn: not for the model alone
    from river import preprocessing


#: A variance under this fraction of (1 + mean^2) is float rounding, not a difference between
#: customers: pooling identical means from several workers leaves ~1e-34, which as a standard
#: deviation would blow rounding up into whole standardized units.
NOISE_VAR = 1e-12


def signal_var(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``var`` with noise-level entries set to 0, so an input (nearly) constant for everyone
    gets no weight in the distance (on transaction-only data: every click feature)."""
    return np.where(var > NOISE_VAR * (1.0 + mean ** 2), var, 0.0)


def scaled_one(scaler: preprocessing.StandardScaler, x: Mapping[str, float]) -> dict[str, float]:
    """One vector's z-scores, as :func:`scaled_matrix` gives them (River's ``transform_one``
    would scale a rounding-level variance up)."""
    out = {}
    for f, v in x.items():
        mean, var = scaler.means[f], scaler.vars[f]
        out[f] = (v - mean) / math.sqrt(var) if var > NOISE_VAR * (1.0 + mean * mean) else 0.0
    return out


def scaled_matrix(
    scaler: preprocessing.StandardScaler, features: Sequence[str], xs: Sequence[Mapping[str, float]]
) -> np.ndarray:
    """Rows of z-scores, exactly as ``scaler.transform_one`` would give them."""
    mean = np.array([scaler.means[f] for f in features])
    var = signal_var(mean, np.array([scaler.vars[f] for f in features]))
    std = np.sqrt(np.where(var > 0, var, 1.0))
    raw = np.array([[x[f] for f in features] for x in xs], dtype=float).reshape(len(xs), len(features))
    # as River's StandardScaler: a feature with no variance scales to 0
    return np.where(var > 0, (raw - mean) / std, 0.0)


def scaler_state(scaler: preprocessing.StandardScaler) -> dict[str, Any]:
    """The scaler's running statistics as plain JSON data."""
    return {"counts": dict(scaler.counts), "means": dict(scaler.means), "vars": dict(scaler.vars)}


def load_scaler(scaler: preprocessing.StandardScaler, state: Mapping[str, Any]) -> None:
    scaler.counts = collections.Counter(state["counts"])
    scaler.means = collections.defaultdict(float, state["means"])
    scaler.vars = collections.defaultdict(float, state["vars"])


def pairwise_sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance from every row of ``a`` (n, d) to every row of ``b`` (k, d): (n, k).

    The one place the distance is written, so every segmenter, the global
    model and the merge measure it alike.
    """
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)


def nearest(z: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre for each row of ``z`` and the Euclidean distance to it."""
    d2 = pairwise_sq_dist(z, centers)
    best = d2.argmin(axis=1)
    return best, np.sqrt(d2[np.arange(len(z)), best])


def kmeans_plus_plus(
    z: np.ndarray, k: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    """k-means++ seeding: spread initial centres in proportion to (weighted) squared distance."""
    w = np.ones(len(z)) if weights is None else np.asarray(weights, dtype=float)
    first = rng.choice(len(z), p=w / w.sum()) if weights is not None else rng.integers(len(z))
    centers = [z[first]]
    for _ in range(1, k):
        d2 = np.min(pairwise_sq_dist(z, np.array(centers)), axis=1) * w
        total = d2.sum()
        idx = rng.choice(len(z), p=d2 / total) if total > 0 else rng.integers(len(z))
        centers.append(z[idx])
    return np.array(centers, dtype=float)


def lloyd(
    z: np.ndarray,
    centers: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    iterations: int = 10,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch (weighted) k-means: Lloyd's iterations over ``z`` from ``centers``.

    Every clusterer's seeding, CluStream's macro step, the leader's merge of
    workers' centres and the global model's refit run through this one loop.
    ``weights`` (default: all 1) weigh each row in the means. A centre that
    wins no weight stays where it is, or, given ``rng``, restarts at the point
    worst served (weighted squared distance to the centre it was assigned at
    the start of the iteration), jittered by 1e-6, and takes that point from
    its centre. ``centers`` is not modified.
    Returns the centres and each row's nearest centre under them.

    >>> z = np.array([[0.0], [1.0], [9.0], [11.0]])
    >>> c, labels = lloyd(z, np.array([[0.0], [5.0]]))
    >>> c.tolist(), labels.tolist()
    ([[0.5], [10.0]], [0, 0, 1, 1])
    >>> c, labels = lloyd(z, np.array([[0.0], [50.0]]), np.array([1.0, 1.0, 1.0, 3.0]),
    ...                   rng=np.random.default_rng(0))  # the far centre restarts at 11
    >>> np.round(c, 3).tolist(), labels.tolist()
    ([[0.5], [10.5]], [0, 0, 1, 1])
    """
    centers = np.array(centers, dtype=float)
    w = np.ones(len(z)) if weights is None else np.asarray(weights, dtype=float)
    for _ in range(iterations):
        d2 = pairwise_sq_dist(z, centers)
        labels = d2.argmin(1)
        for j in range(len(centers)):
            member = labels == j
            total = w[member].sum()
            if total > 0:
                centers[j] = (z[member] * w[member, None]).sum(0) / total
            elif rng is not None:
                worst = int((d2[np.arange(len(z)), labels] * w).argmax())
                centers[j] = z[worst] + rng.normal(0, 1e-6, z.shape[1])
                labels[worst] = j
    return centers, pairwise_sq_dist(z, centers).argmin(1)
