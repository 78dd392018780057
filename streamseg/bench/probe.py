"""Reading a running subject from outside: its /metrics page and its resident memory.

Every subject exposes ``streamseg_events_total`` and the
``streamseg_processing_latency_seconds`` histogram (Kafka record timestamp at
send -> the event's batch fully processed), so one probe serves them all.
Percentiles come from the difference of two histogram scrapes, interpolated
linearly inside a bucket as Prometheus' ``histogram_quantile`` does.

>>> a = Scrape(0.0, 0.0, {0.01: 0, 0.05: 0, float("inf"): 0})
>>> b = Scrape(1.0, 100.0, {0.01: 50, 0.05: 100, float("inf"): 100})
>>> round(b.minus(a).quantile(0.5) * 1000, 3), round(b.minus(a).quantile(0.99) * 1000, 3)
(10.0, 49.2)
"""

from __future__ import annotations

import os
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

LATENCY = "streamseg_processing_latency_seconds"


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts keyed by upper bound (seconds)."""

    buckets: dict[float, float]

    @property
    def count(self) -> float:
        return self.buckets.get(float("inf"), 0.0)

    def quantile(self, q: float) -> float:
        """The q-quantile in seconds (NaN when empty); the top finite bound if it falls in +Inf."""
        total = self.count
        if total <= 0:
            return float("nan")
        rank = q * total
        lower, below = 0.0, 0.0
        for bound in sorted(self.buckets):
            n = self.buckets[bound]
            if n >= rank:
                if bound == float("inf"):
                    return lower
                inside = n - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, n
        return lower


@dataclass(frozen=True, slots=True)
class Scrape:
    at: float  # time.monotonic()
    events: float  # every outcome: processed, duplicate, late, dead letter
    latency: dict[float, float]
    dead_letters: float = 0.0  # inputs dead-lettered so far (every reason)

    @property
    def done(self) -> float:
        """Messages fully processed: each is observed in the latency histogram at its batch's end."""
        return self.latency.get(float("inf"), 0.0)

    def minus(self, earlier: Scrape) -> Histogram:
        return Histogram({b: n - earlier.latency.get(b, 0.0) for b, n in self.latency.items()})


#: Only the samples a read uses: the whole page (thousands of drift and forecast lines)
#: cost a busy worker 10-15% of its CPU at the bench's polling rate, and a drain's CPU
#: per event counted it.
READ_QUERY = urllib.parse.urlencode([("name[]", name) for name in (
    "streamseg_events_total", f"{LATENCY}_bucket", "streamseg_dead_letters_total")])


def scrape(port: int, timeout: float = 2.0) -> Scrape | None:
    """One read of ``/metrics``, the samples it uses; None while the subject is not serving."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?{READ_QUERY}", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    events = dead = 0.0
    latency: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "streamseg_events_total":
                events += s.value
            elif s.name == f"{LATENCY}_bucket":
                latency[float(s.labels["le"])] = s.value
            elif s.name == "streamseg_dead_letters_total":
                dead += s.value
    return Scrape(time.monotonic(), events, latency, dead)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 if it is gone).

    On a shared machine wall-clock rates swing with the neighbours' load; CPU
    time per event is the steadier figure.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by named processes over an interval; a subject's process (an int:
    ``"subject"``; or several by name) also counts its children (``"<name>_children"``).

    A subject's leader does its refresh in a child process, and Valkey and the
    broker work for it too: together they are what one event costs the machine.
    """

    def __init__(self, subject: int | dict[str, int], others: dict[str, int]) -> None:
        self.subjects = {"subject": subject} if isinstance(subject, int) else subject
        self.others = others
        self.start = self._read()

    def _read(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, pid in self.subjects.items():
            out[name] = {pid: cpu_seconds(pid)}
            out[f"{name}_children"] = {p: cpu_seconds(p) for p in descendants(pid)}
        return {**out, **{name: {pid: cpu_seconds(pid)} for name, pid in self.others.items()}}

    def seconds(self) -> dict[str, float]:
        """CPU seconds per name since the meter started (a child started meanwhile counts whole)."""
        end = self._read()
        return {name: sum(max(0.0, cpu - self.start[name].get(pid, 0.0)) for pid, cpu in pids.items())
                for name, pids in end.items()}


def rss_mb(pid: int) -> float:
    """Resident set size of a process and of its descendants in MiB (0 if it is gone).

    The descendants count: a worker's leader keeps its refresh sample in a child
    process (``streamseg.segmenting.offload``), memory the worker owns all the same.
    """
    return sum(_own_rss_mb(p) for p in [pid, *descendants(pid)])


def _own_rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent_of.items() if pp in frontier]
        found += kids
        frontier = kids
    return found
