"""How well the global model's segments hold together, measured on the leader's sample.

Every catalog refresh the leader's customer sample (see
:mod:`streamseg.segmenting.offload`; computed in the child process, never on
the event loop) is assigned to the nearest centre of the current model version
and of the version before it, and per segment the following are measured:

- **silhouette**: scikit-learn's ``silhouette_samples`` on the model's
  standardized inputs, averaged over the segment's members (-1..1; near 0 the
  segment overlaps its neighbours). Silhouette costs O(n²) distances, so it is
  computed on a uniform subsample of at most ``SILHOUETTE_ROWS`` customers
  (seeded: the same sample gives the same figure); the overall silhouette is
  the mean over that subsample.
- **members**: sampled customers nearest to the segment.
- **stability**: of the sampled customers the previous version put in the
  segment, the share the current version keeps there (ids are matched across
  versions, as for the lifecycle events). ``None`` for a segment born with
  this version, or when the previous version is not known.

scikit-learn's metrics are imported on first use only: the child that holds
the sample grows by about 38 MiB resident with them (93 to 132 MiB, measured
with ``/proc/self/status`` after importing ``sklearn.metrics``).

>>> import numpy as np
>>> prev = SegmentModel.first(["a"], np.array([0.0]), np.array([1.0]),
...                           np.array([[-2.0], [2.0]]), np.array([1.0, 1.0]))
>>> cur = SegmentModel(2, ["a"], prev.mean, prev.var, [0, 1], np.array([[-2.0], [0.5]]),
...                    prev.weights, 2)
>>> rows = np.array([[-2.1], [-1.9], [-0.4], [1.9], [2.1]])
>>> v = measure(cur, prev, rows, seed=0)
>>> v.members, v.stability  # the customer at -0.4 went from segment 0 to segment 1
({0: 2, 1: 3}, {0: 0.6666666666666666, 1: 1.0})
>>> round(v.overall, 2), {s: round(x, 2) for s, x in v.silhouette.items()}
(0.58, {0: 0.94, 1: 0.34})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamseg.publish.records import Flag, SegmentValidation
from streamseg.segmenting.model import SegmentModel
from streamseg.segmenting.vectors import nearest

#: silhouette is O(n²): computed on at most this many sampled customers (4000: about 0.9 s
#: of CPU in the child, measured on a busy 2-core machine)
SILHOUETTE_ROWS = 4000


@dataclass(frozen=True, slots=True)
class Validation:
    """Per-segment silhouette, sampled members and stability for one model version."""

    model_version: int
    previous_version: int | None
    overall: float | None  # mean silhouette of the subsample; None with fewer than 2 segments used
    silhouette: dict[int, float] = field(default_factory=dict)
    members: dict[int, int] = field(default_factory=dict)
    stability: dict[int, float] = field(default_factory=dict)


def labels(model: SegmentModel, rows: np.ndarray) -> np.ndarray:
    """Stable segment id of the nearest centre for every raw model-input row."""
    best, _ = nearest(model.scale(rows), model.centers)
    return np.asarray(model.ids, dtype=np.int64)[best]


def silhouettes(z: np.ndarray, ids: np.ndarray, seed: int,
                limit: int = SILHOUETTE_ROWS) -> tuple[float | None, dict[int, float]]:
    """Overall and per-segment mean silhouette of ``ids`` on ``z`` (a seeded subsample of
    at most ``limit`` rows). None / empty when fewer than two segments hold members."""
    if len(z) > limit:
        keep = np.random.default_rng(seed).choice(len(z), limit, replace=False)
        z, ids = z[keep], ids[keep]
    present = np.unique(ids)
    if len(present) < 2 or len(present) >= len(z):
        return None, {}
    from sklearn.metrics import silhouette_samples  # see the module doc: child memory

    s = silhouette_samples(z, ids)
    return float(s.mean()), {int(sid): float(s[ids == sid].mean()) for sid in present}


def stability(previous: np.ndarray, current: np.ndarray, live: list[int]) -> dict[int, float]:
    """Per live segment: the share of the previous version's members the current one keeps."""
    out = {}
    for sid in live:
        before = previous == sid
        if before.any():
            out[sid] = float((current[before] == sid).mean())
    return out


def measure(model: SegmentModel, previous: SegmentModel | None, rows: np.ndarray,
            seed: int) -> Validation:
    """Validate ``model`` on raw model-input ``rows`` (columns in ``model.features`` order)."""
    ids = labels(model, rows)
    overall, sil = silhouettes(model.scale(rows), ids, seed)
    u, n = np.unique(ids, return_counts=True)
    members = {sid: 0 for sid in model.ids} | dict(zip(u.tolist(), n.tolist(), strict=True))
    stable: dict[int, float] = {}
    if previous is not None and previous.features == model.features and len(rows):
        stable = stability(labels(previous, rows), ids, model.ids)
    return Validation(model.version, previous.version if previous else None, overall, sil,
                      members, stable)


def catalog_validation(v: Validation, min_share: float,
                       min_silhouette: float) -> dict[int, SegmentValidation]:
    """The catalog's validation record per measured segment, flagged against the settings
    ``segment_min_share`` ('small') and ``segment_min_silhouette`` ('weak')."""
    n = sum(v.members.values())
    out = {}
    for sid, members in v.members.items():
        share = members / n if n else 0.0
        sil = v.silhouette.get(sid)
        flags: list[Flag] = []
        if share < min_share:
            flags.append("small")
        if sil is not None and sil < min_silhouette:
            flags.append("weak")
        out[sid] = SegmentValidation(
            model_version=v.model_version, previous_version=v.previous_version, silhouette=sil,
            model_silhouette=v.overall, members=members, share=share,
            stability=v.stability.get(sid), flags=flags)
    return out
