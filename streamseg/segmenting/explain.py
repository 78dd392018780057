"""Why a customer moved: the few features that pulled it from one segment to another.

In the model's standardized space a customer ``z`` is nearer segment B than A
by ``sum_f (z_f - a_f)**2 - (z_f - b_f)**2``; each feature's term is its share
of that pull. The features with the largest positive terms are the reasons,
reported in original units: the customer's value and the two segments' means
(the catalog's profile means when known, else the centre translated back to
original units). A first assignment is explained against the population
average (the origin of the standardized space).

>>> import numpy as np
>>> pull(np.array([2.0, 0.0]), np.array([0.0, 0.0]), np.array([2.0, 0.1]))
array([ 4.  , -0.01])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from streamseg.features.registry import feature
from streamseg.publish.records import Reason

TOP_REASONS = 3


def pull(z: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-feature contribution to being nearer ``b`` than ``a``."""
    return (z - a) ** 2 - (z - b) ** 2


def original_units(features: Sequence[str], raw_center: np.ndarray) -> dict[str, float]:
    """A centre in model-input units back in the feature's own units (undo ``log1p``)."""
    out = {}
    for f, v in zip(features, raw_center, strict=True):
        # clamp: expm1 overflows past ~709 (only absurd centres get there)
        out[f] = math.expm1(min(700.0, max(0.0, float(v)))) if feature(f).transform == "log1p" else float(v)
    return out


def reasons(
    features: Sequence[str], z: np.ndarray, values: Mapping[str, float],
    old_center: np.ndarray | None, new_center: np.ndarray,
    old_means: Mapping[str, float] | None, new_means: Mapping[str, float], top: int = TOP_REASONS,
) -> list[Reason]:
    a = old_center if old_center is not None else np.zeros_like(z)
    p = pull(z, a, new_center)
    order = [int(i) for i in np.argsort(-p) if p[i] > 0][:top]
    return [Reason(feature=features[i], value=float(values[features[i]]),
                   previous_mean=None if old_means is None else float(old_means[features[i]]),
                   new_mean=float(new_means[features[i]])) for i in order]
