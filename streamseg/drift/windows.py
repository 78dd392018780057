"""Window lengths and the per-slot aggregates that windows are summed from.

Time is cut into *slots* as long as the shortest window; each batch's
assignments are added to the slot holding the engine's clock (counts and
histograms only, so the per-batch cost does not grow with the window). A window
of length L ending at a slot boundary is the sum of its L / slot slots.

>>> parse_windows("1m,15m")
[60, 900]
>>> parse_windows("30s, 1h ,2d")
[30, 3600, 172800]
>>> window_name(900), window_name(86400), window_name(90)
('15m', '1d', '90s')
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamseg.errors import ConfigError
from streamseg.features.registry import feature

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WINDOW = re.compile(r"^(\d+)([smhdw]?)$")

#: Distances (standardized units) are binned this finely up to DIST_MAX; farther ones
#: land in the last bin. Emerging-segment thresholds are read off these bins.
DIST_STEP = 0.05
DIST_MAX = 40.0
DIST_EDGES = np.arange(0.0, DIST_MAX + DIST_STEP / 2, DIST_STEP)

#: Model inputs are binned finely on fixed edges chosen by the feature's transform
#: (log1p features on 0.1-wide bins of the log scale, raw values up to e^10 ~ 22000;
#: ratios in twentieths), so bins never depend on which data came first. PSI then
#: merges these into deciles of the reference window (stats.psi_on_reference_quantiles).
LOG1P_EDGES = np.arange(0.0, 10.0 + 0.05, 0.1)
RATIO_EDGES = np.linspace(0.0, 1.0, 21)


def parse_windows(spec: str) -> list[int]:
    """``"1m,15m"`` -> ``[60, 900]`` (seconds, sorted, each a multiple of the shortest)."""
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        m = _WINDOW.match(part)
        if not m or int(m.group(1)) == 0:
            raise ConfigError(f"drift window {part!r}: expected a positive number with an "
                              "optional unit s, m, h, d or w (e.g. '1m,15m')")
        out.append(int(m.group(1)) * _UNITS[m.group(2) or "s"])
    out = sorted(set(out))
    if any(w % out[0] for w in out):
        raise ConfigError(f"drift windows {spec!r}: every window must be a multiple of the "
                          f"shortest ({window_name(out[0])})")
    return out


def window_name(seconds: int) -> str:
    """The shortest exact spelling of a window length, used as its label."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def feature_edges(name: str) -> np.ndarray:
    """Fixed bin edges for a model input (after its transform)."""
    return LOG1P_EDGES if feature(name).transform == "log1p" else RATIO_EDGES


@dataclass(slots=True)
class Slot:
    """Everything one slot of time saw, as sums that add up across slots.

    ``versions`` counts the slot's assignments per model version that made them, and
    ``sample`` is a uniform sample (reservoir) of the slot's model inputs (rows in
    the monitor's feature order): when the windows compared span a model change,
    both are re-scored with one model from these (see :mod:`.monitor`). A sum of
    slots (:func:`sum_slots`) keeps the versions, not the samples.
    """

    segments: Counter[int] = field(default_factory=Counter)
    migrations: Counter[tuple[int, int]] = field(default_factory=Counter)
    first_assignments: int = 0
    entries: Counter[int] = field(default_factory=Counter)  # first assignments by segment
    distances: np.ndarray = field(default_factory=lambda: np.zeros(len(DIST_EDGES) - 1))
    features: list[np.ndarray] = field(default_factory=list)
    versions: Counter[int] = field(default_factory=Counter)
    sample: np.ndarray | None = None
    #: customer -> segment last assigned in the slot, kept as long as the slot (two of the
    #: longest windows): the migration forecast follows customers from window to window
    active: dict[str, int] = field(default_factory=dict)
    #: customer -> (model version, model inputs) of that last assignment, kept with ``active``:
    #: the forecast reads the customers an older version assigned with the current model
    inputs: dict[str, tuple[int | None, np.ndarray]] = field(default_factory=dict)
    #: customers active per segment in the slots summed into this one (see :meth:`add`)
    visits: Counter[int] = field(default_factory=Counter)

    def active_counts(self) -> Counter[int]:
        """Customers active in the slot per segment (each once, whatever the batching)."""
        return self.visits + Counter(self.active.values())

    @property
    def n(self) -> int:
        return sum(self.segments.values())

    def keep(self, rows: np.ndarray, seen: int, size: int, rng: np.random.Generator) -> None:
        """Reservoir-sample ``rows`` (the slot had seen ``seen`` rows before them) into at
        most ``size`` rows (:func:`reservoir`).

        >>> s = Slot()
        >>> rng = np.random.default_rng(0)
        >>> s.keep(np.zeros((3, 2)), 0, 4, rng); s.sample.shape
        (3, 2)
        >>> s.keep(np.ones((100, 2)), 3, 4, rng); s.sample.shape
        (4, 2)
        """
        self.sample = reservoir(self.sample, rows, seen, size, rng)

    def add(self, other: Slot) -> None:
        self.segments.update(other.segments)
        self.versions.update(other.versions)
        self.migrations.update(other.migrations)
        self.first_assignments += other.first_assignments
        self.entries.update(other.entries)
        self.distances += other.distances
        self.visits.update(other.active_counts())
        if not self.features:
            self.features = [h.copy() for h in other.features]
        elif other.features:
            for mine, theirs in zip(self.features, other.features, strict=True):
                mine += theirs


def reservoir(sample: np.ndarray | None, rows: np.ndarray, seen: int, size: int,
              rng: np.random.Generator) -> np.ndarray | None:
    """``sample`` (of ``seen`` rows so far) with ``rows`` offered to it, at most ``size`` rows,
    so every row offered is in it with equal chance (algorithm R)."""
    if size <= 0 or not len(rows):
        return sample
    have = 0 if sample is None else len(sample)
    room = max(0, size - have)
    if room:
        head = rows[:room]
        sample = head.copy() if sample is None else np.concatenate((sample, head))
        rows, seen = rows[room:], seen + room
    if not len(rows) or sample is None:
        return sample
    # vectorised: row i (the (seen + i)-th) replaces a random row of the sample with
    # probability size / (seen + i + 1)
    pick = rng.integers(0, seen + np.arange(1, len(rows) + 1))
    hit = pick < size
    if hit.any():
        sample[pick[hit]] = rows[hit]
    return sample


def bin_codes(matrix: np.ndarray, edges: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Each value's bin on its column's edges, numbered across columns (column ``j``'s bins
    are ``starts[j]`` to ``starts[j + 1]``); values outside the edges fall in the end bins.

    Columns sharing an edges array are binned in one call: a batch is binned once,
    then counted per event-time slot (a backlog's batch touches dozens of slots).
    """
    starts = [0]
    for e in edges:
        starts.append(starts[-1] + len(e) - 1)
    codes = np.empty(matrix.shape, dtype=np.int64)
    shared: dict[int, list[int]] = {}
    for j, e in enumerate(edges):
        shared.setdefault(id(e), []).append(j)
    for cols in shared.values():
        e = edges[cols[0]]
        idx = np.clip(np.searchsorted(e, matrix[:, cols], side="right") - 1, 0, len(e) - 2)
        codes[:, cols] = idx + np.array([starts[j] for j in cols])
    return codes, starts


def count_codes(codes: np.ndarray, starts: Sequence[int]) -> list[np.ndarray]:
    """Per-column bin counts of :func:`bin_codes` output (rows = customers)."""
    counts = np.bincount(codes.ravel(), minlength=starts[-1]).astype(float)
    return [counts[a:b] for a, b in itertools.pairwise(starts)]  # rows never overlap


def histogram_features(matrix: np.ndarray, edges: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-column bin counts of ``matrix`` (rows = customers) on each column's edges;
    values outside the edges count in the first or last bin.

    >>> e = np.array([0.0, 1.0, 2.0])
    >>> [h.tolist() for h in histogram_features(np.array([[0.5, 5.0], [1.5, -1.0]]), [e, e])]
    [[1.0, 1.0], [1.0, 1.0]]
    """
    return count_codes(*bin_codes(matrix, edges))


def sum_slots(slots: Sequence[Slot]) -> Slot:
    total = Slot()
    for s in slots:
        total.add(s)
    return total
