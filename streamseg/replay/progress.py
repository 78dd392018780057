"""A small progress bar on stderr: done/total, rate and ETA.

On a terminal it redraws one line about four times a second; otherwise (a log
file, CI) it prints a plain line every few seconds, so logs stay readable.

>>> import io
>>> out = io.StringIO()
>>> bar = Progress("producing", 200, out=out, tty=False, every_s=0.0)
>>> bar.update(50)
>>> out.getvalue().split()[:4]
['producing', '50/200', 'rows', '25%']
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

TTY_REFRESH_S = 0.25
LOG_REFRESH_S = 5.0
_WIDTH = 24


class Progress:
    """Progress of one phase; ``unit`` is "rows" or "bytes" (shown as MB)."""

    def __init__(self, label: str, total: int | None, *, unit: str = "rows",
                 out: TextIO | None = None, tty: bool | None = None,
                 every_s: float | None = None, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.every_s = every_s if every_s is not None else (TTY_REFRESH_S if self.tty else LOG_REFRESH_S)
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._shown = self.started

    def update(self, done: int) -> None:
        """Record progress; draws only when the refresh interval has passed."""
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown >= self.every_s:
            self._shown = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if not self.enabled:
            return
        self._draw(time.monotonic())
        if self.tty:
            self.out.write("\n")
        self.out.flush()

    def line(self, now: float) -> str:
        """The text shown: label, done/total, share, rate and time left."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.label:<10}", f"{self._amount(self.done)}/{self._amount(self.total)} {self._unit}"]
        if self.total:
            share = min(1.0, self.done / self.total)
            if self.tty:
                fill = int(share * _WIDTH)
                parts.append("[" + "#" * fill + "." * (_WIDTH - fill) + "]")
            parts.append(f"{share:4.0%}")
        parts.append(f"{self._amount(rate)} {self._unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_duration(max(0.0, (self.total - self.done) / rate))}")
        return "  ".join(parts)

    @property
    def _unit(self) -> str:
        return "MB" if self.unit == "bytes" else self.unit

    def _amount(self, n: float | None) -> str:
        if n is None:
            return "?"
        return f"{n / 1e6:.1f}" if self.unit == "bytes" else f"{n:,.0f}"

    def _draw(self, now: float) -> None:
        if self.tty:
            self.out.write("\r" + self.line(now) + "\x1b[K")
        else:
            self.out.write(self.line(now) + "\n")
        self.out.flush()


def _duration(seconds: float) -> str:
    """``75`` -> ``1m15s``.

    >>> _duration(75), _duration(4000), _duration(3.2)
    ('1m15s', '1h06m', '3s')
    """
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
