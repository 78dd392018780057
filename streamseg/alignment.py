"""Input partitions read in step by event time when the worker is behind (a backlog, a replay).

A fetch brings each partition's records up to a byte limit. Clicks are many and small,
orders few: one fetch of a backlog can carry a few hours of clicks and weeks of orders.
Merged by record time (:func:`~streamseg.ingest.by_record_time`) within the fetch, the
batch would still apply those weeks of orders before the clicks that came with them, and
the features that compare the two (cart conversion, purchase frequency) would be wrong
for as long as the backlog lasts; how wrong depends on how far behind the worker is,
i.e. on the machine.

So, as Kafka Streams does with its per-partition buffers, a record is handed on only once
no input partition that still has records waiting at the broker can bring an earlier one:
the *frontier* is the lowest record time reached among those partitions, and each
partition's records up to the frontier are released, in partition order (a partition's
records are never reordered: one customer's events stay in order). A partition with
nothing waiting does not hold others back, so a live stream, caught up, passes straight
through. A partition holding too many records ahead of the frontier is paused
(:meth:`EventTimeAligner.crowded`) so the buffer stays bounded while the others catch up.

A partition that says it has records waiting but sends none (a high watermark past the
last record: transaction markers) would hold the rest for ever: once the consumer has
waited ``max_hold_s`` in its fetches since the last release, everything held is released.
The time counts only while the consumer waits for input, not while the worker is busy with
a batch (a long step of history must not count as a partition that sends nothing).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: Held records after which a partition is paused until the others catch up.
HOLD_PER_PARTITION = 2_000
#: With records held, release them all once fetches waited this long without a release.
MAX_HOLD_S = 5.0


class EventTimeAligner:
    """Holds records of input partitions that are ahead in record time of a partition with
    records still waiting at the broker.

    ``time``: a record's time (the event time a replay stamps, else its timestamp);
    ``aligned``: the partitions taking part (the worker's input topics; others pass through).

    >>> a = EventTimeAligner(lambda r: r, lambda tp: True)
    >>> a.add({"clicks": [1, 2, 3], "orders": [2, 9, 30]})
    >>> a.release(waiting={"clicks", "orders"})  # clicks reached 3: orders past it wait
    {'clicks': [1, 2, 3], 'orders': [2]}
    >>> a.held
    2
    >>> a.add({"clicks": [5, 10, 11]})
    >>> a.release(waiting={"clicks"})  # the orders sent all they have; clicks reached 11
    {'orders': [9], 'clicks': [5, 10, 11]}
    >>> a.release(waiting=set())  # caught up everywhere: nothing earlier can come
    {'orders': [30]}
    """

    def __init__(self, time: Callable[[Any], int], aligned: Callable[[Any], bool], *,
                 hold_per_partition: int = HOLD_PER_PARTITION, max_hold_s: float = MAX_HOLD_S) -> None:
        self.time = time
        self.aligned = aligned
        self.hold_per_partition = hold_per_partition
        self.max_hold_s = max_hold_s
        self._held: dict[Hashable, deque[Any]] = {}
        self._reached: dict[Hashable, int] = {}  # the latest record time fetched, per partition
        self._waited = 0.0  # seconds fetches waited since the last release

    @property
    def held(self) -> int:
        """Records held back now."""
        return sum(len(q) for q in self._held.values())

    def add(self, records: Mapping[Any, Sequence[Any]]) -> None:
        """A fetch's records, each partition's in its own order."""
        for tp, rs in records.items():
            if not rs:
                continue
            self._held.setdefault(tp, deque()).extend(rs)
            if self.aligned(tp):
                self._reached[tp] = max(self._reached.get(tp, -1 << 62), max(self.time(r) for r in rs))

    def frontier(self, waiting: Collection[Any]) -> float:
        """The record time up to which nothing earlier can come: the lowest reached by an
        aligned partition with records waiting (one never fetched from: nothing passes yet)."""
        times = [self._reached.get(tp, float("-inf")) for tp in waiting if self.aligned(tp)]
        return min(times, default=float("inf"))

    def release(self, waiting: Collection[Any], waited_s: float = 0.0) -> dict[Any, list[Any]]:
        """Each partition's records up to the frontier, as a prefix of its own order; all of
        them once fetches waited :attr:`max_hold_s` without a release (``waited_s``: how long
        the fetch that brought the last records waited; see the module's docstring)."""
        self._waited += waited_s
        frontier = self.frontier(waiting)
        if self._held and frontier != float("inf") and self._waited >= self.max_hold_s:
            log.info("%d input records held while fetches waited %.1f s for partitions that "
                     "said they had more and sent none: released", self.held, self._waited)
            frontier = float("inf")
        out: dict[Any, list[Any]] = {}
        for tp, q in list(self._held.items()):
            if frontier == float("inf") or not self.aligned(tp):  # caught up: all of it
                out[tp] = list(q)
                q.clear()
            else:
                taken = []
                while q and self.time(q[0]) <= frontier:
                    taken.append(q.popleft())
                if taken:
                    out[tp] = taken
            if not q:
                del self._held[tp]
        if out or not self._held:
            self._waited = 0.0
        return out

    def crowded(self) -> set[Any]:
        """Partitions holding more than :attr:`hold_per_partition` records: pause them."""
        return {tp for tp, q in self._held.items() if len(q) > self.hold_per_partition}

    def clear(self) -> None:
        """Forget everything held and reached (partitions moved: they are read again from
        their commits)."""
        self._held.clear()
        self._reached.clear()
        self._waited = 0.0
