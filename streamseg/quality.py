"""Clustering quality against known truth (pure numpy; no scikit-learn needed).

>>> adjusted_rand_index(["a", "a", "b", "b"], [1, 1, 0, 0])
1.0
>>> round(adjusted_rand_index(["a", "a", "b", "b"], [1, 0, 1, 0]), 3)
-0.5
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def _contingency(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> np.ndarray:
    t_idx = {v: i for i, v in enumerate(dict.fromkeys(truth))}
    p_idx = {v: i for i, v in enumerate(dict.fromkeys(pred))}
    table = np.zeros((len(t_idx), len(p_idx)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        table[t_idx[t], p_idx[p]] += 1
    return table


def _comb2(x: np.ndarray) -> float:
    return float((x * (x - 1) // 2).sum())


def adjusted_rand_index(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Hubert & Arabie's ARI: 1 = same partition, ~0 = chance agreement."""
    n = len(truth)
    if n < 2:
        return 1.0
    table = _contingency(truth, pred)
    index = _comb2(table)
    rows, cols = _comb2(table.sum(1)), _comb2(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)
