"""When the leader's model work runs: on the wall clock live, at fixed event-time points on history.

Live, the leader merges, re-fits and re-scores on wall-clock timers
(``model_sync_s``, ``catalog_refresh_s``, ``rescore_every_s``). A replay (or
a backlog) runs at full speed: a wall second can hold days of event time, so
timers would put a machine-dependent number of re-fits into each day of
history, and two runs of the same files would end with different segments.
So while the engine reads history (``clock=event`` and its events more than
:data:`HISTORY_BEHIND_MS` behind the wall clock), the work runs once at every
``history_step_hours`` boundary of event time instead, on a grid fixed in
epoch time, with the batch pipeline paused: a batch is cut at each boundary,
the work runs, and only then are the events past it applied. Two replays of
the same history then change the model at the same event-time points.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from streamseg.timeunits import HOUR_MS

#: The engine reads history when its events are this far behind the wall clock; live
#: streams lag by seconds.
HISTORY_BEHIND_MS = 10 * 60 * 1000.0
#: No batch of history for this long: the history is drained, the leader's timers resume (the
#: event clock stands still, so nobody is stale and memberships stay as the last step left them).
HISTORY_IDLE_MS = 5_000.0
#: ... or for this long when the consumer said more input was waiting after the last batch
#: (a loaded machine can take longer than the idle to fetch and decode the next one; bounded,
#: as a partition's high watermark can stay past its last record: transaction markers).
HISTORY_BACKLOG_IDLE_MS = 60_000.0


class Pace:
    """Cuts batches of history at event-time step boundaries and says when a step is due.

    ``step_hours`` apart, on a grid starting at the epoch; the first batch only
    sets where the pace stands (nothing is due before any history was applied).

    >>> pace = Pace("event", step_hours=1.0, wall_ms=lambda: 100 * HOUR_MS)
    >>> ts = [0.5 * HOUR_MS, 0.9 * HOUR_MS, 1.2 * HOUR_MS, 3.5 * HOUR_MS, 0.95 * HOUR_MS]
    >>> pace.cut(ts)  # per part: indices of its events, and the step (ms) run before it, if any
    [([0, 1, 4], None), ([2], 3600000.0), ([3], 10800000.0)]
    >>> pace.history
    True
    >>> Pace("event", 1.0, wall_ms=lambda: 3.6 * HOUR_MS).cut(ts)  # live: one part, no step
    [([0, 1, 2, 3, 4], None)]
    """

    def __init__(self, clock: str, step_hours: float, wall_ms: Callable[[], float]) -> None:
        self.clock = clock  # settings.clock: only the event clock can read history
        self.step_ms = step_hours * HOUR_MS
        self.wall_ms = wall_ms
        self._history_at: float | None = None  # wall time of the last batch of history
        self._step: int | None = None  # the grid step the engine's events have reached
        self._unfinished = False  # history was read, and its end not yet reported (drained)
        self._applying = 0  # batches being applied now (their steps can take longer than the idle)
        self._more = False  # the consumer said more input waits after the last batch
        self._replayed = False  # history was read and no live batch came since

    @property
    def history(self) -> bool:
        """The engine is reading history (its last batch was, within :data:`HISTORY_IDLE_MS`):
        the leader's wall-clock timers stand aside.

        The idle counts from the end of the last batch of history, not its start: on a busy
        machine a batch's steps (re-fits, sweeps) can take longer than the idle, and a timer
        that woke meanwhile would merge or re-fit at a point of the history set by the wall
        clock (two replays of the same files then end with different segments).
        """
        if self._history_at is None:
            return False
        idle = HISTORY_BACKLOG_IDLE_MS if self._more else HISTORY_IDLE_MS
        return self._applying > 0 or self.wall_ms() - self._history_at < idle

    def backlog(self, more: bool) -> None:
        """The consumer, before each batch: more input is already known to wait after it.
        History then holds through a longer idle (:data:`HISTORY_BACKLOG_IDLE_MS`): on a loaded
        machine the next fetch can take longer than :data:`HISTORY_IDLE_MS`, and a history
        taken for drained in its middle ran a step at a wall-clock point of it."""
        self._more = more

    @contextlib.contextmanager
    def applying(self) -> Iterator[None]:
        """Around applying a batch (its :meth:`cut`, steps and parts): history stays
        :attr:`history` meanwhile, and its idle starts when the batch is done.

        >>> wall = [100 * HOUR_MS]
        >>> pace = Pace("event", 1.0, wall_ms=lambda: wall[0])
        >>> with pace.applying():
        ...     _ = pace.cut([0.5 * HOUR_MS, 2.5 * HOUR_MS])
        ...     wall[0] += 2 * HISTORY_IDLE_MS  # the batch's steps took long
        ...     pace.history
        True
        >>> pace.history  # its idle starts now
        True
        >>> wall[0] += HISTORY_IDLE_MS
        >>> pace.history, pace.aside  # history is over, its last step not run yet
        (False, True)
        >>> pace.drained(), pace.aside  # the leader runs it: the timers resume
        (True, False)
        """
        self._applying += 1
        try:
            yield
        finally:
            self._applying -= 1
            if self._history_at is not None:
                self._history_at = self.wall_ms()

    @property
    def merging(self) -> bool:
        """The leader may merge the workers' clusterers: not while history is read or ending,
        nor after it until a live batch came (they learned the history in the order batches
        arrived in, which differs between two replays; the steps' model stands until then).
        The merge timer merges without a model all the same: a history too small for the
        steps' first fit gets its first model from the clusterers, as a live stream does."""
        return not (self.history or self._unfinished or self._replayed)

    @property
    def ending(self) -> bool:
        """History was read and the leader has not run its last step yet (:meth:`drained`)."""
        return self._unfinished

    @property
    def aside(self) -> bool:
        """The leader's wall-clock timers (catalog refresh, sweeps) stand aside: history is
        read, or its last step has not run yet (until then a timer's re-fit would come
        before that step, at a point set by the wall clock)."""
        return self.history or self._unfinished

    def drained(self) -> bool:
        """True once when a stretch of history has ended (no batch of it for
        :data:`HISTORY_IDLE_MS`, or a live batch came): the leader runs a last step on the
        customers as the history left them, then its timers resume."""
        if not self._unfinished or self.history:
            return False
        self._unfinished = False
        return True

    def live(self, ts_ms: Sequence[float]) -> bool:
        """Would :meth:`cut` give these event times one part and no step (a live batch)?
        Nothing changes; the engine asks before it applies a batch ahead of its turn.

        >>> pace = Pace("event", 24.0, wall_ms=lambda: 100 * HOUR_MS)
        >>> pace.live([100 * HOUR_MS - 1000.0]), pace.live([50 * HOUR_MS]), pace.live([])
        (True, False, True)
        """
        return not ts_ms or not (self.clock == "event" and self.step_ms > 0
                                 and self.wall_ms() - max(ts_ms) > HISTORY_BEHIND_MS)

    def cut(self, ts_ms: Sequence[float]) -> list[tuple[list[int], float | None]]:
        """A batch's event times -> its parts in order: event indices (in batch order) and
        the step due before the part is applied (its event time; None: none due).

        Events of a step already passed (another partition behind) go in the first part.
        """
        if ts_ms:
            wall = self.wall_ms()
            reading = self.clock == "event" and self.step_ms > 0 and \
                wall - max(ts_ms) > HISTORY_BEHIND_MS
            self._history_at = wall if reading else None
            self._unfinished |= reading  # a live batch right after history still ends it
            self._replayed = reading
        if self._history_at is None or not ts_ms:
            return [(list(range(len(ts_ms))), None)]
        steps = [int(t // self.step_ms) for t in ts_ms]
        if self._step is None:
            self._step = min(steps)
        parts: dict[int, list[int]] = {}
        for i, s in enumerate(steps):
            parts.setdefault(max(s, self._step), []).append(i)
        out = []
        for s in sorted(parts):
            out.append((parts[s], s * self.step_ms if s > self._step else None))
            self._step = s
        return out
