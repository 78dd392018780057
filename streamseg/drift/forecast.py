"""Markov forecast of the segment shares one and two windows ahead, from a window's migrations.

Every customer update in a window is a transition: the customer's previous
segment (none for a first assignment) to the one assigned now. Row ``i`` of the
transition matrix holds the updates whose previous segment was ``i``: those
assigned ``i`` again on the diagonal (the window's count of ``i`` minus the moves
into ``i`` minus the first assignments to ``i``: customers who stayed), the moves
to ``j`` off it; rows are normalised to sum to 1. A segment no update left from
keeps its customers (identity row).

Customers entering (first assignments) are not in any row. The forecast assumes
they keep coming as in the window: the same share ``f`` of the updates, with the
same mix ``q`` over segments, so one window ahead

    shares' = (1 - f) * shares @ P + f * q

and two windows ahead the same step again. The "no change" forecast is the
window's shares as they are (see ``load_tests/drift_scenarios.py`` for both
measured against the shares that then occur).

>>> sids = [0, 1]
>>> counts = {0: 80, 1: 20}           # updates in the window
>>> moves = {(0, 1): 10}              # 10 of segment 0's updates moved to 1
>>> P = transitions(sids, counts, moves, {})
>>> P.round(3).tolist()               # 0: 80 stayed, 10 left; 1: 10 of its 20 came from 0
[[0.889, 0.111], [0.0, 1.0]]
>>> [s.round(3).tolist() for s in forecast(sids, counts, moves, {})]
[[0.711, 0.289], [0.632, 0.368]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: how many windows ahead the report forecasts
HORIZONS = 2


def transitions(sids: Sequence[int], counts: Mapping[int, float],
                migrations: Mapping[tuple[int, int], float],
                entries: Mapping[int, float]) -> np.ndarray:
    """Row-normalised transition matrix over ``sids`` (see the module doc)."""
    pos = {s: i for i, s in enumerate(sids)}
    k = len(sids)
    m = np.zeros((k, k))
    for (a, b), n in migrations.items():
        if a in pos and b in pos:
            m[pos[a], pos[b]] += n
    moved_in = m.sum(0)
    for s, i in pos.items():
        m[i, i] = max(0.0, counts.get(s, 0) - moved_in[i] - entries.get(s, 0))
    rows = m.sum(1, keepdims=True)
    return np.where(rows > 0, m / np.where(rows > 0, rows, 1.0), np.eye(k))


def forecast(sids: Sequence[int], counts: Mapping[int, float],
             migrations: Mapping[tuple[int, int], float], entries: Mapping[int, float],
             *, start: np.ndarray | Sequence[float] | None = None,
             horizons: int = HORIZONS) -> list[np.ndarray]:
    """Shares over ``sids`` one, two, ... ``horizons`` windows ahead.

    ``start``: the shares to step from (default: ``counts`` normalised), e.g. a
    window's shares re-scored with the current model."""
    c = np.array([counts.get(s, 0) for s in sids], dtype=float)
    total = c.sum()
    if not total:
        return [np.zeros(len(sids)) for _ in range(horizons)]
    s = np.asarray(start, dtype=float) if start is not None else c / total
    q = np.array([entries.get(sid, 0) for sid in sids], dtype=float)
    f = q.sum() / total
    q = q / q.sum() if q.sum() else q
    p = transitions(sids, counts, migrations, entries)
    out = []
    for _ in range(horizons):
        s = (1.0 - f) * (s @ p) + f * q
        out.append(s)
    return out


def mean_abs_error(predicted: Mapping[int, float], actual: Mapping[int, float]) -> float:
    """Mean absolute error in share points (0-100) over the segments of either.

    >>> mean_abs_error({0: 0.5, 1: 0.5}, {0: 0.4, 1: 0.5, 2: 0.1})
    6.666666666666667
    """
    sids = set(predicted) | set(actual)
    if not sids:
        return 0.0
    return 100.0 * sum(abs(predicted.get(s, 0.0) - actual.get(s, 0.0)) for s in sids) / len(sids)
