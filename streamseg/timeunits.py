"""Lengths of time, once: event times and clocks are epoch milliseconds, Redis TTLs seconds.

>>> DAY_MS == 24 * HOUR_MS and WEEK_MS == 7 * DAY_MS and DAY_S * 1000 == DAY_MS
True
"""

from __future__ import annotations

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
DAY_S = 86_400
