"""Keep a child process running: start it again, with backoff, whenever it dies.

``streamseg dev`` runs its worker under a :class:`Supervised`, so a worker that
crashes (or is killed) comes back instead of taking the broker and Valkey down
with it; the view shows how often that happened.

>>> from pathlib import Path
>>> import sys, tempfile
>>> now = [0.0]
>>> log = Path(tempfile.mkdtemp()) / "exit.log"
>>> job = Supervised(ManagedProcess("job", [sys.executable, "-c", "pass"], log), clock=lambda: now[0])
>>> job.start().process.proc.wait()
0
>>> job.poll()
'job exited with code 0; starting it again in 1s (log: ...exit.log)'
>>> now[0] = 1.0
>>> job.poll()
'job started again (restart 1)'
>>> job.process.stop(); job.status()
'job restarts: 1 (last exit code 0)'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streamseg.devstack.processes import ManagedProcess


@dataclass
class Supervised:
    """``process``, restarted after ``first_delay`` s, doubling up to ``max_delay`` while it
    keeps dying; a run of ``healthy_after`` s or more starts the backoff over."""

    process: ManagedProcess
    first_delay: float = 1.0
    max_delay: float = 30.0
    healthy_after: float = 60.0
    clock: Callable[[], float] = time.monotonic
    restarts: int = 0
    last_exit: int | None = None
    _delay: float = field(default=0.0, repr=False)
    _started_at: float = field(default=0.0, repr=False)
    _restart_at: float | None = field(default=None, repr=False)

    def start(self) -> Supervised:
        self.process.start()
        self._started_at = self.clock()
        self._delay = self.first_delay
        return self

    def poll(self) -> str | None:
        """Look at the process, restart it when due; a line saying what happened, if anything."""
        now = self.clock()
        if self._restart_at is not None:
            return self._restart(now) if now >= self._restart_at else None
        proc = self.process.proc
        if proc is None or proc.poll() is None:
            return None
        self.last_exit = proc.returncode
        if now - self._started_at >= self.healthy_after:
            self._delay = self.first_delay  # it ran well for a while: this is a new failure
        delay, self._delay = self._delay, min(self.max_delay, self._delay * 2)
        self._restart_at = now + delay
        return (f"{self.process.name} exited with code {self.last_exit}; starting it again in "
                f"{delay:.0f}s (log: {self.process.log_path})")

    def _restart(self, now: float) -> str:
        self._restart_at = None
        self.process.stop()  # closes the dead run's log handle
        self.process.start()
        self._started_at = now
        self.restarts += 1
        return f"{self.process.name} started again (restart {self.restarts})"

    def status(self) -> str:
        """One line for the view: empty while the process never died."""
        if self.last_exit is None:
            return ""
        waiting = (f", starting again in {max(0.0, self._restart_at - self.clock()):.0f}s"
                   if self._restart_at is not None else "")
        return (f"{self.process.name} restarts: {self.restarts} "
                f"(last exit code {self.last_exit}{waiting})")
