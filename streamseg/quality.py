"""Clustering quality against known truth: scikit-learn's scores under the names callers use.

>>> adjusted_rand_index(["a", "a", "b", "b"], [1, 1, 0, 0])
1.0
>>> round(adjusted_rand_index(["a", "a", "b", "b"], [1, 0, 1, 0]), 3)
-0.5
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from sklearn.metrics import adjusted_rand_score


def adjusted_rand_index(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Hubert & Arabie's ARI (``sklearn.metrics.adjusted_rand_score``): 1 = same partition,
    ~0 = chance agreement; fewer than two customers count as the same partition."""
    return float(adjusted_rand_score(list(truth), list(pred)))
