"""Distribution-shift statistics over counts (pure functions, no state).

Every function takes *counts* over the same categories or bins, because that is
what the windows aggregate; shares are derived here, with smoothing where a
logarithm needs it.

>>> ref, cur = [500, 300, 200], [500, 300, 200]
>>> psi(ref, cur), round(js_distance(ref, cur), 6), composition_shift(ref, cur)
(0.0, 0.0, 0.0)
>>> round(composition_shift([500, 500, 0], [250, 500, 250]), 3)  # a quarter moved
0.25
>>> psi([900, 100], [500, 500]) > 0.2  # the usual "significant shift" level
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon

#: Pseudo-count added to every bin before PSI takes logarithms (Laplace-style):
#: an empty bin on one side gives a large but finite term instead of infinity.
PSEUDO_COUNT = 0.5

Counts = Sequence[float] | np.ndarray


def shares(counts: Counts) -> np.ndarray:
    """Counts as fractions of their total (all zeros stay zeros)."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    return c / total if total > 0 else c


def psi(reference: Counts, current: Counts, pseudo_count: float = PSEUDO_COUNT) -> float:
    """Population stability index: sum over bins of (cur - ref) * ln(cur / ref).

    Bins empty on both sides contribute nothing; others get ``pseudo_count``
    added so a bin that empties (or appears) counts heavily but finitely.
    Common reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant shift.
    """
    r, c = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    used = (r + c) > 0
    if not used.any() or r.sum() == 0 or c.sum() == 0:
        return 0.0
    r, c = shares(r[used] + pseudo_count), shares(c[used] + pseudo_count)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_on_reference_quantiles(reference: Counts, current: Counts, n_bins: int = 10) -> float:
    """PSI after merging fine bins into ~``n_bins`` groups of equal reference mass.

    This is the textbook PSI (deciles of the reference), computed from fine
    histograms instead of raw samples: a fine bin joins the group its reference
    mass falls in, so mass beyond the reference's range lands in the outer
    groups. Point masses (many zeros) give fewer, larger groups.

    >>> ref = [0, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0, 0]
    >>> psi_on_reference_quantiles(ref, ref)
    0.0
    >>> round(psi_on_reference_quantiles(ref, [0, 0, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0]), 3)
    0.354
    """
    r, c = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    total = r.sum()
    if total == 0 or c.sum() == 0:
        return 0.0
    before = np.concatenate(([0.0], np.cumsum(r)[:-1])) / total
    group = np.minimum((before * n_bins + 1e-9).astype(int), n_bins - 1)
    return psi(np.bincount(group, weights=r, minlength=n_bins),
               np.bincount(group, weights=c, minlength=n_bins))


def js_distance(reference: Counts, current: Counts) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) via scipy."""
    r, c = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if r.sum() == 0 or c.sum() == 0:
        return 0.0
    return float(jensenshannon(r, c, base=2.0))


def composition_shift(reference: Counts, current: Counts) -> float:
    """Total variation distance: the share of customers that would have to change
    segment to turn the reference mix into the current one (0 = same, 1 = disjoint)."""
    return float(0.5 * np.abs(shares(current) - shares(reference)).sum())


def quantile_from_histogram(counts: Counts, edges: np.ndarray, q: float) -> float:
    """The ``q``-quantile of values binned by ``edges`` (len(counts) == len(edges) - 1),
    interpolated linearly inside the bin that holds it."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total == 0:
        return float("nan")
    cum = np.cumsum(c)
    target = q * total
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, len(c) - 1)
    before = cum[i] - c[i]
    frac = (target - before) / c[i] if c[i] > 0 else 0.0
    return float(edges[i] + frac * (edges[i + 1] - edges[i]))


def share_above(counts: Counts, edges: np.ndarray, threshold: float) -> float:
    """Fraction of binned values above ``threshold`` (the bin holding it is split linearly)."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total == 0:
        return 0.0
    i = int(np.searchsorted(edges, threshold, side="right")) - 1
    if i < 0:
        return 1.0
    if i >= len(c):
        return 0.0
    width = edges[i + 1] - edges[i]
    part = (edges[i + 1] - threshold) / width if width > 0 else 0.0
    return float((c[i] * part + c[i + 1:].sum()) / total)
