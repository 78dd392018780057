"""Orchestration of ``streamseg bench``: subjects, phases, figures.

For every subject (the engine on single-event messages, the engine on batched
envelopes, the bare Faust agent, the naive engine) the runner

1. **drains** a backlog pre-loaded before the subject starts (the same records
   for every subject, each with its own consumer group and Redis prefix): the
   steady rate is its maximum throughput;
2. starts it again on fresh topics and sends **fixed rates** (25/50/75 % of
   that maximum) evenly, reading end-to-end latency percentiles from the
   difference of its latency histogram before and after each rate;

sampling resident memory all along. A **soak** then runs the engine at 50 % of
its maximum and samples memory and latency per window.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from streamseg.bench.load import Pool, Record, envelopes, paced, preload, singles
from streamseg.bench.probe import Histogram, Scrape, cpu_seconds, rss_mb, scrape
from streamseg.devstack import DevStack, ManagedProcess, free_port
from streamseg.devstack.processes import wait_for_port
from streamseg.settings import Settings
from streamseg.topics import ensure_topics


@dataclass(frozen=True)
class Subject:
    name: str
    argv: list[str]
    envelope: int = 0  # events per message (0: single-event messages)


ENGINE = [sys.executable, "-m", "streamseg", "worker"]


def subject_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"STREAMSEG_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    return env


def run_settings(base: Settings, inputs: str, log_level: str = "warn") -> Settings:
    """Fresh group, Redis prefix and output topics; inputs named by ``inputs``."""
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(update={
        "app_id": f"bench-{tag}", "key_prefix": f"b{tag}",
        "topic_clickstream": f"{inputs}.clickstream.v1",
        "topic_transactions": f"{inputs}.transactions.v1",
        "topic_dlq": f"b{tag}.dlq.v1", "topic_segment_updates": f"b{tag}.segment-updates.v1",
        "web_port": free_port(), "log_level": log_level,
    })


@dataclass
class Running:
    """A subject's worker process and what has been sampled from it."""

    settings: Settings
    proc: ManagedProcess
    memory: list[tuple[float, float]] = field(default_factory=list)  # (monotonic s, MiB)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (monotonic s, CPU s)

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def sample(self) -> Scrape | None:
        s = scrape(self.settings.web_port)
        now = time.monotonic()
        self.memory.append((now, rss_mb(self.pid)))
        self.cpu.append((now, cpu_seconds(self.pid)))
        return s

    def stop(self) -> None:
        self.proc.stop()


def start(stack: DevStack, subject: Subject, settings: Settings, label: str) -> Running:
    asyncio.run(ensure_topics(settings))
    proc = ManagedProcess(f"{subject.name}-{label}", subject.argv,
                          stack.dir / f"{subject.name}-{label}.log", subject_env(settings)).start()
    stack.processes.append(proc)
    wait_for_port(settings.web_port, 60, proc.proc)
    return Running(settings, proc)


def steady_rate(samples: list[Scrape]) -> float:
    """Events/s between 5 % of the final count and the last sample (skips the start-up ramp)."""
    final = samples[-1].events
    first = next(s for s in samples if s.events >= 0.05 * final)
    last = samples[-1]
    secs = last.at - first.at
    return (last.events - first.events) / secs if secs > 0 else float("nan")


def drain(run: Running, total: float, window: float, every: float = 0.2) -> list[Scrape]:
    """Sample until ``total`` events are counted or ``window`` s after the first one."""
    samples: list[Scrape] = []
    began: float | None = None
    deadline = time.monotonic() + window + 90  # start-up (group join) is bounded too
    while time.monotonic() < deadline:
        s = run.sample()
        if s is not None:
            samples.append(s)
            if s.events > 0 and began is None:
                began = s.at
                deadline = began + window
            if s.events >= total:
                break
        time.sleep(every)
    return samples


def wait_for(run: Running, total: float, timeout: float) -> Scrape:
    """Block until the subject has counted ``total`` events (or raise)."""
    deadline = time.monotonic() + timeout
    while True:
        s = run.sample()
        if s is not None and s.events >= total:
            return s
        if time.monotonic() > deadline:
            raise TimeoutError(f"subject counted {s.events if s else 0:.0f} of {total:.0f} events")
        time.sleep(0.1)


def records_for(settings: Settings, pool: Pool, subject: Subject, first_pass: int) -> Iterator[Record]:
    if subject.envelope:
        return envelopes(settings, pool, subject.envelope, first_pass)
    return singles(settings, pool, first_pass)


def latency_ms(h: Histogram) -> dict[str, float]:
    return {f"p{int(q * 100)}_ms": round(h.quantile(q) * 1000, 2) for q in (0.5, 0.95, 0.99)}


def _scrape(run: Running) -> Scrape:
    s = run.sample()
    if s is None:
        raise RuntimeError(f"{run.proc.name} stopped serving /metrics (see {run.proc.log_path})")
    return s


def fixed_rate(run: Running, records: Iterator[Record], rate: float, seconds: float,
               drain_timeout: float) -> dict[str, float]:
    """Send ``rate`` events/s for ``seconds``, wait for them all; latency percentiles."""
    before = _scrape(run)
    sent = asyncio.run(paced(run.settings, records, rate, seconds))
    after = wait_for(run, before.events + sent, drain_timeout)
    return {"rate": round(rate), "sent": sent, **latency_ms(after.minus(before)),
            "rss_mb": round(run.memory[-1][1], 1)}


async def _preload(settings: Settings, records: Iterator[Record], n: int) -> int:
    await ensure_topics(settings)
    return await preload(settings, records, n)


def example(base: Settings, pool: Pool, subjects: list[Subject], n: int, window: float,
            rate_seconds: float, stack: DevStack) -> dict[str, dict[str, object]]:
    """Drain and fixed-rate phases for each subject (see the module docstring)."""
    out: dict[str, dict[str, object]] = {}
    shared: dict[int, tuple[str, int]] = {}
    for subject in subjects:
        if subject.envelope not in shared:
            inputs = f"bench-drain-{uuid.uuid4().hex[:6]}"
            s = run_settings(base, inputs)
            total = asyncio.run(_preload(s, records_for(s, pool, subject, 0), n))
            shared[subject.envelope] = (inputs, total)
        inputs, total = shared[subject.envelope]
        run = start(stack, subject, run_settings(base, inputs), "drain")
        samples = drain(run, total, window)
        run.stop()
        rate = steady_rate(samples)
        c0 = next(c for (t, c) in run.cpu if t >= samples[0].at)
        print("cpu us/event", (run.cpu[-1][1] - c0) / max(1, samples[-1].events) * 1e6)
        result: dict[str, object] = {"max_events_per_s": round(rate),
                                     "drained": samples[-1].events,
                                     "drain_rss_mb": round(max(m for _, m in run.memory), 1)}
        run = start(stack, subject, run_settings(base, f"bench-rate-{uuid.uuid4().hex[:6]}"), "rates")
        records = records_for(run.settings, pool, subject, 1)
        result["rates"] = [fixed_rate(run, records, rate * f, rate_seconds, 60)
                           for f in (0.25, 0.5, 0.75)]
        run.stop()
        out[subject.name] = result
        print(subject.name, result, flush=True)
    return out


def main() -> None:
    with DevStack() as stack:
        base = Settings(kafka_bootstrap=stack.bootstrap, redis_url=stack.redis_url)
        pool = Pool.simulate(int(os.environ.get("BENCH_CUSTOMERS", "1000")))
        subjects = [Subject(n, a, e) for n, a, e in [
            ("engine", ENGINE, 0),
            ("bare_faust", [sys.executable, "-m", "streamseg.bench.subjects", "bare"], 0),
            ("naive", [sys.executable, "-m", "streamseg.bench.subjects", "naive"], 0),
            ("engine_batched", ENGINE, 100),
        ] if n in os.environ.get("BENCH_SUBJECTS", "engine,bare_faust,naive,engine_batched").split(",")]
        example(base, pool, subjects, int(os.environ.get("BENCH_N", "100000")),
                float(os.environ.get("BENCH_WINDOW", "20")), float(os.environ.get("BENCH_RATE_S", "5")),
                stack)


if __name__ == "__main__":
    main()
