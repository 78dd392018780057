"""Numeric helpers every segmenter shares: online scaling as data, nearest centres, k-means.

The segmenters learn through River's ``StandardScaler`` one dict at a time, but
assign whole batches at once; these helpers turn a batch of dicts into one
matrix of z-scores with the scaler's current statistics, so both paths agree.

>>> from river import preprocessing
>>> sc = preprocessing.StandardScaler()
>>> for v in (1.0, 3.0):
...     sc.learn_one({"a": v, "b": 5.0})
>>> scaled_matrix(sc, ["a", "b"], [{"a": 3.0, "b": 7.0}]).tolist()  # "b" has no variance yet
[[1.0, 0.0]]
>>> nearest(np.array([[0.0], [9.0]]), np.array([[1.0], [5.0]]))
(array([0, 1]), array([1., 4.]))
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # River's preprocessing loads pandas and scikit-learn: not for the model alone
    from river import preprocessing


def scaled_matrix(
    scaler: preprocessing.StandardScaler, features: Sequence[str], xs: Sequence[Mapping[str, float]]
) -> np.ndarray:
    """Rows of z-scores, exactly as ``scaler.transform_one`` would give them."""
    mean = np.array([scaler.means[f] for f in features])
    var = np.array([scaler.vars[f] for f in features])
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


def nearest(z: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre for each row of ``z`` and the Euclidean distance to it."""
    d2 = ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
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
        d2 = np.min(((z[:, None, :] - np.array(centers)[None]) ** 2).sum(2), axis=1) * w
        total = d2.sum()
        idx = rng.choice(len(z), p=d2 / total) if total > 0 else rng.integers(len(z))
        centers.append(z[idx])
    return np.array(centers, dtype=float)


def lloyd(
    z: np.ndarray, centers: np.ndarray, weights: np.ndarray | None = None, iterations: int = 10
) -> np.ndarray:
    """A few (weighted) Lloyd iterations; a centre that wins no point stays where it is."""
    centers = np.array(centers, dtype=float)
    w = np.ones(len(z)) if weights is None else np.asarray(weights, dtype=float)
    for _ in range(iterations):
        labels = ((z[:, None, :] - centers[None]) ** 2).sum(2).argmin(1)
        for k in range(len(centers)):
            member = labels == k
            total = w[member].sum()
            if total > 0:
                centers[k] = (z[member] * w[member, None]).sum(0) / total
    return centers
