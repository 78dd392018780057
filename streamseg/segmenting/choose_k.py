"""Choosing the number of segments (``STREAMSEG_N_SEGMENTS=auto``): scores per k, and the rule.

At each refit the leader's sample process scores every k in
``n_segments_min..n_segments_max`` (:func:`evaluate`, in the child process,
never on the event loop) and the leader decides with :class:`KChooser`
whether the model's k changes. Two scores per k, on the sample standardized
with the model's scaler:

- **silhouette** (scikit-learn's ``silhouette_score`` on a sub-sample): how
  much nearer customers are to their own segment than to the next one;
- **stability**: k-means is fitted on the sample and on bootstrap resamples;
  each segment of the sample's fit is looked up in every resample's fit
  (assigned on the common sample) by its best Jaccard similarity; a k's
  stability is its *least* reproducible segment's mean similarity (Hennig's
  clusterwise bootstrap): a k that cuts a group in two at an arbitrary place
  has one segment that no resample finds again.

A k is **eligible** when its stability is at least ``n_segments_stability``
and its silhouette within ``n_segments_silhouette_tolerance`` of the best k's;
the refit **prefers** the largest eligible k (groups that overlap cost a
little silhouette, so silhouette alone prefers too few; stability stops the
splitting where segments stop being reproducible). The current k is kept
unless a refit *argues for a change* (:meth:`KRule.argues`), and k changes
only after ``n_segments_patience`` consecutive refits argued, to the k they
preferred most often (see docs/model.md, choosing k).

>>> rule = KRule(k_min=2, k_max=4, stability=0.75, tolerance=0.05, hysteresis=0.1, patience=2)
>>> scores = [KScore(2, 0.40, 0.99), KScore(3, 0.45, 0.98), KScore(4, 0.30, 0.50)]
>>> rule.preferred(scores), rule.argues(2, scores), rule.argues(3, scores)
(3, True, False)
>>> chooser = KChooser(rule)
>>> [chooser.observe(2, scores) for _ in range(2)]  # clear, and lasting: the second refit changes k
[2, 3]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from streamseg.publish.records import KScoreRecord, KSelection, now_iso

if TYPE_CHECKING:
    from streamseg.settings import Settings

#: at most this many customers are scored (a random subset of a larger sample)
EVAL_ROWS = 4000
#: customers the silhouette is computed on (it costs rows^2)
SILHOUETTE_ROWS = 2000
#: bootstrap resamples per k for the stability
BOOTSTRAPS = 8
#: k-means++ starts per fit on the sample (the best inertia wins): it is the reference the
#: resamples are compared with and the centres a change of k starts from
N_INIT = 8
#: k-means++ starts per bootstrap refit
N_INIT_BOOT = 3


def evaluate(z: np.ndarray, ks: Sequence[int], *, seed: int = 0, rows: int = EVAL_ROWS,
             bootstraps: int = BOOTSTRAPS) -> list[KScore]:
    """Silhouette and bootstrap stability of k-means for every k in ``ks`` on rows ``z``.

    ``ks`` too large for the sample (fewer than 10 rows per segment) are left out.
    scikit-learn is imported here, so only a leader under auto loads it.
    """
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    if len(z) > rows:
        z = z[rng.choice(len(z), rows, replace=False)]
    out = []
    with threadpool_limits(1):  # one core: the worker's loop keeps the other
        for k in ks:
            if k < 2 or len(z) < 10 * k:
                continue
            labels, centers = _kmeans(z, k, rng, N_INIT)
            if len(np.unique(labels)) < 2:
                continue
            sil = float(silhouette_score(z, labels, sample_size=min(SILHOUETTE_ROWS, len(z)),
                                         random_state=int(rng.integers(1 << 31))))
            out.append(KScore(k, sil, stability(z, labels, k, rng, bootstraps), centers))
    return out


@dataclass(frozen=True, slots=True)
class KScore:
    """The scores of one k on one sample, and its k-means centres (standardized units)."""

    k: int
    silhouette: float
    stability: float
    centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), compare=False)


def stability(z: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
              bootstraps: int = BOOTSTRAPS) -> float:
    """The least reproducible segment's mean best Jaccard similarity over bootstrap refits."""
    found = np.zeros(k)
    for _ in range(bootstraps):
        idx = rng.integers(0, len(z), len(z))
        _, centers = _kmeans(z[idx], k, rng, N_INIT_BOOT)
        found += best_jaccard(labels, _nearest(z, centers), k)
    return float(found.min() / bootstraps)


def best_jaccard(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per cluster of labelling ``a``: its best Jaccard similarity with a cluster of ``b``.

    >>> best_jaccard(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]), 2).tolist()
    [1.0, 1.0]
    >>> best_jaccard(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]), 2).tolist()
    [0.6666666666666666, 0.5]
    """
    out = np.zeros(k)
    for i in range(k):
        mine = a == i
        if not mine.any():
            continue
        for j in np.unique(b[mine]):
            theirs = b == j
            out[i] = max(out[i], (mine & theirs).sum() / (mine | theirs).sum())
    return out


def _kmeans(z: np.ndarray, k: int, rng: np.random.Generator,
            n_init: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(k, n_init=n_init, random_state=int(rng.integers(1 << 31))).fit(z)
    return km.labels_, km.cluster_centers_


def _nearest(z: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ((z[:, None, :] - centers[None, :, :]) ** 2).sum(-1).argmin(1)


# -- the rule ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KRule:
    """When a refit prefers another k, and when it argues for changing the current one."""

    k_min: int
    k_max: int
    stability: float
    tolerance: float
    hysteresis: float
    patience: int

    @classmethod
    def from_settings(cls, s: Settings) -> KRule:
        return cls(s.n_segments_min, s.n_segments_max, s.n_segments_stability,
                   s.n_segments_silhouette_tolerance, s.n_segments_hysteresis, s.n_segments_patience)

    @property
    def ks(self) -> list[int]:
        return list(range(self.k_min, self.k_max + 1))

    def eligible(self, scores: Sequence[KScore]) -> list[int]:
        """The ks stable enough, with a silhouette within the tolerance of the best."""
        if not scores:
            return []
        best = max(s.silhouette for s in scores)
        return [s.k for s in scores
                if s.stability >= self.stability and s.silhouette >= best - self.tolerance]

    def preferred(self, scores: Sequence[KScore]) -> int | None:
        """The largest eligible k (None: no k is)."""
        return max(self.eligible(scores), default=None)

    def argues(self, current: int, scores: Sequence[KScore]) -> bool:
        """Does this refit argue for changing ``current``? (the hysteresis)

        Only if it prefers another k, and the current one has failed (out of
        range, stability below ``stability - hysteresis``, or silhouette more
        than twice the tolerance below the best), or the preferred k is larger
        and clearly stable (at least ``stability + hysteresis``).
        """
        pref = self.preferred(scores)
        if pref is None or pref == current:
            return False
        by_k = {s.k: s for s in scores}
        cur = by_k.get(current)
        if cur is None:
            return True
        best = max(s.silhouette for s in scores)
        failed = (cur.stability < self.stability - self.hysteresis
                  or cur.silhouette < best - 2 * self.tolerance)
        clearly = pref > current and by_k[pref].stability >= self.stability + self.hysteresis
        return failed or clearly


class KChooser:
    """The leader's memory of the last refits' evidence; decides the k of each refit.

    Kept in memory: a new leader starts collecting evidence afresh (the model's
    k itself travels with the model).
    """

    def __init__(self, rule: KRule) -> None:
        self.rule = rule
        self.argued: list[int] = []  # the k preferred by each consecutive refit that argued
        self.last: KSelection | None = None

    def observe(self, current: int, scores: Sequence[KScore], sample: int = 0) -> int:
        """The k this refit fits: ``current`` unless the evidence is clear and lasting."""
        rule = self.rule
        pref = rule.preferred(scores)
        if rule.argues(current, scores) and pref is not None:
            self.argued.append(pref)
        else:
            self.argued.clear()
        k = current
        if len(self.argued) >= rule.patience:
            counts = Counter(self.argued)
            latest = {x: i for i, x in enumerate(self.argued)}  # a tie goes to the latest
            k = max(counts, key=lambda x: (counts[x], latest[x]))
            self.argued.clear()
        eligible = set(rule.eligible(scores))
        self.last = KSelection(
            k=k, previous_k=current, preferred_k=pref, evidence=len(self.argued),
            patience=rule.patience, sample=sample, evaluated_ts=now_iso(),
            scores=[KScoreRecord(k=s.k, silhouette=round(s.silhouette, 4),
                                 stability=round(s.stability, 4), eligible=s.k in eligible)
                    for s in scores])
        return k

    def missed(self, k: int) -> None:
        """The change to ``k`` was not applied (a newer model version arrived meanwhile):
        the next refit that argues for a change makes it, without a new wait."""
        self.argued = [k] * (self.rule.patience - 1)
