"""How the active population and its segments moved: the figures alert texts quote.

A persona that goes silent barely moves the segment *mix* when the segments
mix personas, or when a re-fit during the change lets the centres follow the
customers who stay; it does empty the windows. ``shrink`` compares the customers
active in the two windows, each customer counted once per slot (the shortest
window) it was active in, so the figure does not depend on how events were
batched, nor on the model: it is the share of the reference window's activity
that is gone. Where it went missing is read per segment as the customers were
assigned.

>>> round(shrink(Counter({1: 600, 2: 400}), Counter({1: 250, 2: 400})), 3)
0.35
>>> shrink(Counter({1: 600}), Counter({1: 700}))
0.0
>>> losses(Counter({1: 600, 2: 400}), Counter({1: 250, 2: 420}), {1: "Window shoppers"})
'Window shoppers -350 (-58%)'
>>> moves([1, 2, 3], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3], {1: "A", 2: "B"})
'A 50.0% -> 20.0%, B 30.0% -> 50.0%, Segment 3 20.0% -> 30.0%'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence


def shrink(reference: Counter[int], current: Counter[int]) -> float:
    """Share of the reference window's active customers (per slot) missing from the current one."""
    ref = sum(reference.values())
    return max(0.0, 1.0 - sum(current.values()) / ref) if ref else 0.0


def losses(reference: Counter[int], current: Counter[int], names: Mapping[int, str],
           top: int = 3) -> str:
    """The segments that lost the most active customers, largest loss first."""
    lost = sorted(((reference[s] - current[s], s) for s in reference if reference[s] > current[s]),
                  reverse=True)[:top]
    return ", ".join(f"{names.get(s, f'Segment {s}')} -{n:,} ({-n / reference[s]:.0%})"
                     for n, s in lost)


def moves(sids: Sequence[int], reference_shares: Sequence[float], shares: Sequence[float],
          names: Mapping[int, str], top: int = 3) -> str:
    """The segments whose share of the window changed most, with both shares."""
    order = sorted(range(len(sids)), key=lambda i: -abs(shares[i] - reference_shares[i]))[:top]
    return ", ".join(f"{names.get(sids[i], f'Segment {sids[i]}')} {reference_shares[i]:.1%} -> "
                     f"{shares[i]:.1%}" for i in order)
