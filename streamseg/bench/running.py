"""A subject while it runs: its worker process, its load, and what is read from it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from streamseg.bench.load import Cursor, Pool, Record, Sent, preload
from streamseg.bench.probe import Scrape, rss_mb, scrape
from streamseg.bench.segments import published_ari, touched
from streamseg.devstack import ManagedProcess
from streamseg.settings import Settings


@dataclass(frozen=True)
class Subject:
    name: str
    argv: list[str]
    envelope: int = 0  # events per message (0: one event per message)
    label: str = ""
    memberships: bool = False  # it publishes memberships: their quality is measured


@dataclass
class Running:
    """A subject's worker process and what has been sampled from it."""

    subject: Subject
    settings: Settings
    proc: ManagedProcess
    records: Iterator[Record]
    tick: float  # the paced producer's tick on this broker (seconds)
    pool: Pool
    cursor: Cursor  # events ``records`` has taken from the pool
    memory: list[tuple[float, float]] = field(default_factory=list)  # (monotonic s, MiB)

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def stop(self) -> None:
        self.proc.stop()

    def scrape(self) -> Scrape:
        s = scrape(self.settings.web_port)
        self.memory.append((time.monotonic(), rss_mb(self.pid)))
        if s is None:
            if not self.proc.running:
                raise RuntimeError(f"{self.subject.name} exited; see {self.proc.log_path}")
            raise RuntimeError(f"{self.subject.name} stopped answering /metrics")
        return s

    def wait_for(self, done: float, timeout: float, every: float = 0.1) -> Scrape:
        """Block until ``done`` messages are fully processed (not merely counted)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.scrape()
            if s.done >= done:
                return s
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.subject.name} finished {s.done:.0f} of {done:.0f} "
                                   f"messages after {timeout:.0f}s; see {self.proc.log_path}")
            time.sleep(every)

    def quality(self, since: int) -> dict[str, Any]:
        """ARI of the published memberships of the customers sent since cursor count ``since``."""
        if not self.subject.memberships:
            return {}
        n, end = len(self.pool), self.cursor.taken
        return {"quality": {**published_ari(self.settings, touched(self.pool, since, end)),
                            "passes": [since // n, max(since, end - 1) // n]}}

    def send(self, events: int) -> Sent:
        """Send ``events`` events as fast as possible."""
        return asyncio.run(preload(self.settings, self.records, events))


