"""The engine's sense of "now": event time by default, the wall clock on request.

On a replay the wall clock says nothing about the data, so recency features,
re-scoring and drift windows run on event time: the newest event time applied.
Drift windows close on the slowest partition that still has data, so a
partition read behind the others is not "late".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

#: A partition without data for this long no longer holds the drift windows back.
IDLE_S = 10.0


class EngineClock:
    """Event-time watermark, per partition and overall, fed by each batch's applied events.

    >>> clock = EngineClock("event", wall_ms=lambda: 50_000.0)
    >>> clock.now_ms()  # nothing applied yet: the wall clock
    50000.0
    >>> clock.advance({("clicks", 0): 9_000, ("clicks", 1): 7_000})
    >>> clock.now_ms(), clock.drift_ms()
    (9000, 7000.0)
    """

    def __init__(self, clock: str, wall_ms: Callable[[], float]) -> None:
        self.clock = clock  # "event" or "wall" (settings.clock)
        self.wall_ms = wall_ms
        self.clock_ms = 0.0  # event-time watermark: newest event time applied
        # newest event time and wall time of last data per input partition: drift windows
        # close on the slowest active partition, so a partition read behind is not "late"
        self.partition_clock: dict[tuple[str, int], tuple[int, float]] = {}

    def now_ms(self) -> float:
        """The engine's clock: the newest event time applied (``clock="event"``), else the wall clock."""
        if self.clock == "wall" or self.clock_ms == 0.0:
            return self.wall_ms()
        return self.clock_ms

    def advance(self, newest: Mapping[tuple[str, int], int]) -> None:
        """Record a batch's newest applied event time per (topic, partition)."""
        if newest:
            self.clock_ms = max(self.clock_ms, max(newest.values()))
        wall = self.wall_ms()
        for part, ts in newest.items():
            self.partition_clock[part] = (max(ts, self.partition_clock.get(part, (0, 0.0))[0]), wall)

    def reach(self, ts_ms: float) -> None:
        """Event time has reached ``ts_ms`` (a step of history: its next events are no older)."""
        self.clock_ms = max(self.clock_ms, ts_ms)

    def drift_ms(self) -> float:
        """Event time every partition that had data in the last IDLE_S seconds has reached."""
        if self.clock == "wall" or not self.partition_clock:
            return self.now_ms()
        active = [ts for ts, seen in self.partition_clock.values()
                  if self.wall_ms() - seen <= IDLE_S * 1000]
        return float(min(active)) if active else self.now_ms()
