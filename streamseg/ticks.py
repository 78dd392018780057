"""The one way a worker's timer tick fails: logged, counted, tried again next tick.

Faust ends a timer whose body raises, so every periodic job of the worker runs
through :class:`Ticks`: an outage (Redis or a broker away) costs one tick, not
the timer. The cluster refusing the worker is no outage: every retry would meet
it again, so a refusal goes to ``refused`` (the worker's
:meth:`streamseg.access_guard.AccessGuard.stop_for`), which stops the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)
Tick = Callable[[], Awaitable[object]]


class Ticks:
    """Runs timer bodies so a failed tick is logged and counted, never fatal to its timer.

    ``failures`` counts failed ticks by timer (``streamseg_timer_failures_total``);
    ``refused`` is told every failure first and returns True for the ones that
    stop the worker (those are neither logged here nor counted).

    >>> import asyncio
    >>> from prometheus_client import CollectorRegistry
    >>> failures = Counter("failures", "", ["timer"], registry=CollectorRegistry())
    >>> ticks = Ticks(failures, refused=lambda exc: False)
    >>> async def read_sizes() -> None:
    ...     raise OSError("Redis is away")
    >>> asyncio.run(ticks.attempt("reading sizes", read_sizes, timer="sizes"))
    False
    >>> failures.labels("sizes")._value.get()
    1.0
    """

    def __init__(self, failures: Counter, refused: Callable[[BaseException], bool]) -> None:
        self.failures = failures
        self.refused = refused

    async def attempt(self, what: str, op: Tick, *, timer: str, level: int = logging.WARNING,
                      traceback: bool = False) -> bool:
        """Run ``op``; True if it succeeded. ``what`` names it in the log line ("<what> failed")."""
        try:
            await op()
        except Exception as exc:
            if not self.refused(exc):
                self.failures.labels(timer).inc()
                log.log(level, "%s failed: %r", what, exc, exc_info=traceback)
            return False
        return True

    def every(self, app: faust.App, seconds: float, what: str, *, on_leader: bool = False,
              level: int = logging.WARNING, traceback: bool = False) -> Callable[[Tick], Tick]:
        """Register the decorated function as a Faust timer whose failures go through :meth:`attempt`.

        Gauges refreshed every second pass ``level=logging.DEBUG``: an outage must
        not flood the log with a line per gauge per second.
        """
        def register(tick: Tick) -> Tick:
            async def guarded() -> None:
                await self.attempt(what, tick, timer=tick.__name__, level=level, traceback=traceback)

            # Faust names the timer after the function (not functools.wraps: Faust reads the
            # signature through __wrapped__ to decide whether to pass the app)
            guarded.__name__, guarded.__qualname__ = tick.__name__, tick.__qualname__
            app.timer(seconds, on_leader=on_leader)(guarded)
            return tick

        return register
