"""A subject while it runs: its worker process(es), its load, and what is read from it.

:class:`Running` is one process (every subject but the pair); :class:`Pair` is
two ``streamseg worker`` processes in one consumer group on the same topics,
read as one: their ``/metrics`` summed, their memory summed, each one's CPU
reported under its own name (``subject``, ``subject_2``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from streamseg.bench.load import Cursor, Pool, Record, Sent, preload, skip_to_round
from streamseg.bench.probe import Scrape, rss_mb, scrape
from streamseg.bench.segments import published_ari, round_truth, touched
from streamseg.devstack import ManagedProcess
from streamseg.settings import Settings


@dataclass(frozen=True)
class Subject:
    name: str
    argv: list[str]
    envelope: int = 0  # events per message (0: one event per message)
    label: str = ""
    memberships: bool = False  # it publishes memberships: their quality is measured
    workers: int = 1  # processes in its consumer group (1 or 2)


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

    def pids(self) -> dict[str, int]:
        """The subject's worker processes by the name their CPU is reported under."""
        return {"subject": self.pid}

    def ports(self) -> list[int]:
        return [self.settings.web_port]

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
        """Block until ``done`` messages are fully processed (not merely counted).

        Polls ``/metrics`` every ``every`` seconds near the end, less often while much
        is left: a read costs the worker about a millisecond of CPU even filtered to the
        three series it uses (the whole page of a settled worker: 10-15 ms), and a drain's
        CPU per event counts it.
        """
        deadline = time.monotonic() + timeout
        last: Scrape | None = None
        while True:
            s = self.scrape()
            if s.done >= done:
                return s
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.subject.name} finished {s.done:.0f} of {done:.0f} "
                                   f"messages after {timeout:.0f}s; see {self.proc.log_path}")
            time.sleep(poll_interval(last, s, done, every))
            last = s

    def quality(self, since: int) -> dict[str, Any]:
        """ARI of the published memberships of the customers sent since cursor count ``since``."""
        if not self.subject.memberships:
            return {}
        rounds, end = self.cursor.rounds, self.cursor.taken
        passes = [k + j for at, k, lanes in rounds for j in range(lanes)
                  if at < end and at + lanes * len(self.pool) > since]
        return {"quality": {**published_ari(self.settings, touched(self.pool, rounds, since, end)),
                            "passes": [min(passes), max(passes)] if passes else []}}

    def round_quality(self) -> dict[str, Any]:
        """ARI of the published memberships of the last whole round's customers (whole histories)."""
        k, lanes = self.cursor.last_round()
        return {"quality": {**published_ari(self.settings, round_truth(self.pool, k, lanes)),
                            "passes": [k, k + lanes - 1], "lanes": lanes, "whole_pass": True}}

    def to_next_round(self, lanes: int = 1) -> None:
        """Leave the rest of the current round unsent; the next begins with ``lanes`` passes.

        Exact for envelopes too: at a round's end the load sends every open envelope.
        """
        self.cursor.lanes = lanes
        skip_to_round(self.records, self.cursor)

    def send(self, events: int, whole_round: bool = False) -> Sent:
        """Send ``events`` events as fast as possible (``whole_round``: and on to a round's end)."""
        return asyncio.run(preload(self.settings, self.records, events,
                                   ends=self.cursor if whole_round else None))


@dataclass
class Pair(Running):
    """Two worker processes in one consumer group: read as one subject."""

    second: ManagedProcess | None = None
    second_port: int = 0

    @property
    def pid_2(self) -> int:
        assert self.second is not None and self.second.proc is not None
        return self.second.proc.pid

    def pids(self) -> dict[str, int]:
        return {"subject": self.pid, "subject_2": self.pid_2}

    def ports(self) -> list[int]:
        return [self.settings.web_port, self.second_port]

    def stop(self) -> None:
        self.proc.stop()
        if self.second is not None:
            self.second.stop()

    def scrape(self) -> Scrape:
        """Both workers' counts and latency buckets, summed; both processes' memory."""
        reads = [scrape(port) for port in self.ports()]
        self.memory.append((time.monotonic(), rss_mb(self.pid) + rss_mb(self.pid_2)))
        for proc, s in zip((self.proc, self.second), reads, strict=True):
            if s is None:
                alive = proc is not None and proc.running
                raise RuntimeError(f"{self.subject.name}: a worker {'stopped answering' if alive else 'exited'}"
                                   f"; see {proc.log_path if proc else '?'}")
        a, b = reads
        assert a is not None and b is not None
        latency = {k: a.latency.get(k, 0.0) + b.latency.get(k, 0.0) for k in a.latency | b.latency}
        return Scrape(time.monotonic(), a.events + b.events, latency, a.dead_letters + b.dead_letters)

    def each_done(self) -> list[float]:
        """Messages each worker has fully processed: both own partitions once both are > 0."""
        return [s.done if s is not None else 0.0 for s in (scrape(p) for p in self.ports())]


def poll_interval(last: Scrape | None, now: Scrape, done: float, every: float) -> float:
    """Half the time the rest should take at the rate seen since ``last``, within
    [``every``, 1 s]: few scrapes in a long drain, ``every``'s precision at its end.

    >>> at = lambda t, n: Scrape(t, n, {float("inf"): n})
    >>> poll_interval(at(0.0, 0.0), at(1.0, 1000.0), 5000.0, 0.05)
    1.0
    >>> poll_interval(at(0.0, 0.0), at(1.0, 1000.0), 1100.0, 0.05)
    0.05
    >>> poll_interval(at(0.0, 0.0), at(1.0, 1000.0), 1400.0, 0.05)
    0.2
    >>> poll_interval(None, at(1.0, 1000.0), 5000.0, 0.05)
    0.05
    """
    rate = (now.done - last.done) / (now.at - last.at) if last and now.at > last.at else 0.0
    if rate <= 0:
        return every
    return min(1.0, max(every, 0.5 * (done - now.done) / rate))
