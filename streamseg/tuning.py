"""Process-wide interpreter settings a worker runs best with, made in one place.

They change the whole process, so no library call (``create_app``: tests build
apps inside pytest) makes them: only a worker's entry point does, once, through
:func:`tune_process`.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from streamseg.settings import Settings

#: Python's default is 5 ms; see tune_process.
GIL_SWITCH_INTERVAL_S = 0.0005
#: Python's default is 700 allocations; see tune_process.
GC_YOUNG_THRESHOLD = 10_000


def tune_process(app: faust.App, settings: Settings) -> None:
    """Tune this process for the worker ``app``; call once, before the worker runs.

    - **GIL switch interval** (0.5 ms, with ``web_in_thread``): the HTTP thread
      waits for the interpreter lock while a batch computes; Python hands it
      over every 5 ms by default, which a lookup would wait each time.
    - **gc.freeze** once the worker runs: what exists then (modules, Faust,
      River, the model) lives as long as the process. Frozen, it stays out of
      every full collection, which scanned it all (50-100 ms pauses every few
      seconds, straight into the p99 latency).
    - **young-generation threshold** (:func:`tune_gc`).
    """
    if settings.web_in_thread:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    tune_gc()

    @app.task
    async def freeze_startup_heap() -> None:
        gc.collect()
        gc.freeze()


def tune_gc() -> None:
    """Collect the young generation every 10,000 allocations instead of 700.

    A batch allocates a few objects per event (the event, its fields, the Lua
    payload), most alive until the batch ends: at 700 the collector ran every
    hundred events or so, and its older generations after them, scanning the
    batch again each time (about 1 us of CPU per enveloped event,
    docs/performance.md#leaner-hot-path-session-10). Older generations keep
    their default ratios; a young collection still scans at most 10,000
    objects, well under a millisecond.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
