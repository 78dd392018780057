"""Orchestration of ``streamseg bench``: subjects, phases, figures.

Every subject gets its own topics, consumer group and Redis prefix on one
embedded broker and Valkey, and a warm-up burst (which also seeds the engine's
model). In the full run subjects start one at a time, so idle ones do not poll
the broker while another is measured; ``--short`` starts them together (a
Faust worker needs seconds to join its group). Then, for each subject:

0. an engine subject gets warm-up bursts until its leader has fitted the
   customer-value model (its first fit is the heaviest; a warm worker has it;
   ``--short`` turns the value fit off: it takes longer than the short phases);
1. **backlog**: events are sent as fast as the producer can; once it is done,
   the subject drains what is left alone, and that tail's rate is its maximum
   throughput (its CPU time per event is read from ``/proc`` over the same
   tail: the steadier figure on a shared machine);
2. **fixed rates**: 25/50/75 % of that maximum, sent evenly, each followed by
   a wait until everything is processed; latency percentiles come from the
   difference of the subject's latency histogram before and after.

Finally the **soak** holds the engine at 50 % of its maximum and records
latency and resident memory per window. Resident memory is sampled all along.
A subject that cannot keep up with a phase is reported as such.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from streamseg.bench.load import Cursor, Pool, Timeline, envelopes, paced, singles, tick_for
from streamseg.bench.probe import CpuMeter, Histogram, Scrape, cpu_seconds
from streamseg.bench.running import Pair, Running, Subject
from streamseg.bench.segments import in_process_reference
from streamseg.devstack import DevStack, ManagedProcess, free_port
from streamseg.devstack.processes import describe_broker, wait_for_port
from streamseg.events.models import iso
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS
from streamseg.topics import ensure_topics

FRACTIONS = (0.25, 0.5, 0.75)
SOAK_FRACTION = 0.5  # the soak holds this share of the engine's maximum
#: Subjects' settings under the simulated-time load (docs/performance.md, "Quality under load").
#: A pass of 28 simulated days goes out in 10 s to 2 min, so its events are history to the
#: engine (more than 10 minutes behind the wall clock): history pacing would pause the
#: batches at every 24 h of event time, every second or so, and measure a replay, not the
#: live path; 0 keeps the leader's wall-clock timers, as live. Drift windows follow the event
#: clock: the default 1m,15m would close ~30,000 windows per pass (a report for each 15
#: minutes of history holding 100 customers); weekly slots close a window every 5-25 s of
#: the bench, about as often as 1m windows live.
SIMULATED_TIME = {"history_step_hours": 0.0, "drift_windows": "7d,28d"}


def subjects(envelope: int) -> list[Subject]:
    engine = [sys.executable, "-m", "streamseg", "worker"]
    baseline = [sys.executable, "-m", "streamseg.bench.subjects"]
    return [
        Subject("engine", engine, label="streamseg worker, one event per message", memberships=True),
        Subject("engine_batched", engine, envelope,
                label=f"streamseg worker, envelopes of {envelope} events", memberships=True),
        Subject("bare_faust", [*baseline, "bare"],
                label="bare Faust agent: decode + ack, one event per message"),
        Subject("naive", [*baseline, "naive"],
                label="naive engine: one Redis round trip + one River step per event"),
        Subject("engine_pair", engine, label="two streamseg workers in one group, one event per message",
                memberships=True, workers=2),
    ]


@dataclass(frozen=True)
class Plan:
    """How long and how much: ``short`` fits CI, the default is the documented full run."""

    short: bool
    customers: int
    warmup_events: int  # per subject, before its measurements (and past the model's warm-up)
    model_warmup: int  # the engine's STREAMSEG_MODEL_WARMUP for every subject
    tail_seconds: float  # a backlog the subject needs about this long to drain alone
    rate_seconds: float
    soak_seconds: float
    soak_window: float
    envelope: int = 100
    #: subjects whose fixed rates begin at a pass's start and end at a pass's end, at least one
    #: whole pass each, so their quality figure scores customers whose every event came at that
    #: rate (the soak always does); in --short the engine only, whose figures the targets read
    whole_passes: tuple[str, ...] = ()
    #: "simulated": each customer's simulated spacing (a :class:`Timeline`); "send": every
    #: event stamped with its send time (the bench before 2026-12-06; no quality figure)
    event_time: str = "simulated"
    #: the engine subjects fit the customer-value model, the first fit before they are
    #: measured (:func:`value_fitted`); off in --short, whose phases are shorter than that fit
    value_fit: bool = True
    #: a phase that scores whole passes at ``f`` of the maximum sends rounds of
    #: ``round(f / lane_share)`` passes side by side (each its own customers), so every one of
    #: them moves through its simulated days at ``lane_share`` of the maximum: the rate rises
    #: with the customers, as a shop's load does, and the days pass at the same pace at every
    #: level. One pass at 75% would press 28 days into a third of the time of one at 25%,
    #: while the leader's re-fits and sweeps run on wall-clock timers: fewer of them per
    #: simulated day (docs/performance.md, "Quality under load"). None: one pass at a time
    lane_share: float | None = 0.25

    def lanes(self, fraction: float) -> int:
        """Passes side by side in a whole-pass phase at ``fraction`` of the maximum.

        >>> [Plan.make(False, None).lanes(f) for f in (0.25, 0.5, 0.75)]
        [1, 2, 3]
        """
        return 1 if self.lane_share is None else max(1, round(fraction / self.lane_share))

    @classmethod
    def make(cls, short: bool, soak_seconds: float | None) -> Plan:
        if short:
            soak = 5.0 if soak_seconds is None else soak_seconds
            return cls(True, 600, 300, 100, 2.0, 1.5, soak, 1.0, whole_passes=("engine",),
                       value_fit=False)
        soak = 600.0 if soak_seconds is None else soak_seconds
        return cls(False, 4_000, 3_000, 500, 15.0, 20.0, soak, max(5.0, soak / 60),
                   whole_passes=("engine", "engine_batched", "engine_pair"))

    def timeline(self, pool: Pool, settings: Settings) -> Timeline | None:
        """Where each pass of ``pool`` sits in event time (None: stamped at send time)."""
        return Timeline.of(pool, settings.earliest_event_ms) if self.event_time == "simulated" else None


def subject_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"STREAMSEG_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    return env


def subject_settings(base: Settings, name: str, plan: Plan) -> Settings:
    """Fresh topics (every one: a model or catalog on a shared topic would be adopted by
    the other subjects' workers), consumer group and Redis prefix for one subject."""
    tag = f"{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    return base.model_copy(update={
        "app_id": f"bench-{tag}", "key_prefix": f"bench:{tag}",
        "topic_clickstream": f"bench.{tag}.clickstream.v1",
        "topic_transactions": f"bench.{tag}.transactions.v1",
        "topic_dlq": f"bench.{tag}.dlq.v1",
        "topic_segment_updates": f"bench.{tag}.segment-updates.v1",
        "topic_segments": f"bench.{tag}.segments.v1", "topic_model": f"bench.{tag}.model.v1",
        "topic_drift": f"bench.{tag}.drift.v1", "topic_audit": f"bench.{tag}.audit.v1",
        "web_port": free_port(), "log_level": "warn", "model_warmup": plan.model_warmup,
        "value_fit": plan.value_fit,
        **(SIMULATED_TIME if plan.event_time == "simulated" else {}),
    })


def launch(stack: DevStack, base: Settings, pool: Pool, subject: Subject, plan: Plan) -> Running:
    settings = subject_settings(base, subject.name, plan)
    asyncio.run(ensure_topics(settings))
    # a pair's second worker: the same group and topics, its own /metrics port
    own = [settings] + [settings.model_copy(update={"web_port": free_port()})] * (subject.workers - 1)
    procs = []
    for i, s in enumerate(own):
        tag = f"_{i + 1}" if i else ""
        procs.append(ManagedProcess(subject.name + tag, subject.argv,
                                    stack.dir / f"{subject.name}{tag}.log", subject_env(s)).start())
        stack.processes.append(procs[-1])
    cursor, timeline = Cursor(), plan.timeline(pool, settings)
    records = (envelopes(settings, pool, subject.envelope, cursor=cursor, timeline=timeline)
               if subject.envelope else singles(settings, pool, cursor=cursor, timeline=timeline))
    if len(procs) == 2:
        return Pair(subject, settings, procs[0], records, tick_for(stack.broker), pool, cursor,
                    second=procs[1], second_port=own[1].web_port)
    return Running(subject, settings, procs[0], records, tick_for(stack.broker), pool, cursor)


def joined(runs: list[Running]) -> None:
    """Wait until every subject serves and consumes (they join their groups concurrently)."""
    for run in runs:
        for port in run.ports():
            wait_for_port(port, 120, run.proc.proc)
    sent = {run.subject.name: run.send(1) for run in runs}
    for run in runs:
        run.wait_for(sent[run.subject.name].messages, 180)


def shared(pair: Pair, events: int, timeout: float = 120.0) -> None:
    """Send small bursts until both workers of a pair have processed messages: the group has
    split the partitions between them (its rebalance is over before anything is measured)."""
    deadline = time.monotonic() + timeout
    while min(pair.each_done()) <= 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pair.subject.name}: one worker got no partitions in {timeout:.0f}s")
        before = pair.scrape()
        pair.wait_for(before.done + pair.send(events).messages, timeout)


def warm_up(run: Running, events: int) -> float:
    """A first burst (it also seeds the engine's model); returns a rough rate to size the backlog."""
    before = run.scrape()
    t0 = time.monotonic()
    sent = run.send(events)
    run.wait_for(before.done + sent.messages, 300)
    return sent.events / (time.monotonic() - t0)


def value_fitted(run: Running, events: int, timeout: float = 300.0) -> float | None:
    """Send warm-up bursts until the subject's leader has fitted the customer-value model;
    returns the seconds it took (None: not fitted in ``timeout``).

    The first fit imports pymc-marketing and compiles its models (a child process busy
    for 5-70 s): left to happen when it may, it fell inside the measured phases (three
    engine subjects at once in ``--short``). A warm worker has fitted long before; later
    re-fits, every ``value_refit_s``, stay in what the bench measures."""
    import redis

    from streamseg.features.keys import Keys

    client = redis.Redis.from_url(run.settings.redis_url)
    key = Keys(run.settings.key_prefix).value_params()
    t0 = time.monotonic()
    try:
        while not client.exists(key):
            if time.monotonic() - t0 > timeout:
                return None
            before = run.scrape()
            run.wait_for(before.done + run.send(events).messages, timeout)
            # a fit takes seconds: poll a while before sending more (the sample needs buyers)
            until = time.monotonic() + 10.0
            while not client.exists(key) and time.monotonic() < until:
                time.sleep(0.5)
        return round(time.monotonic() - t0, 1)
    finally:
        client.close()


def settle_rounds(settings: Settings, timeline: Timeline | None) -> int:
    """Whole rounds an engine subject is sent before it is measured: enough that every customer
    the segments learn from (active within ``model_active_days``) came after its first event,
    and one more (0 without simulated time).

    Every round adds customers who lapse when the next begins; the segments learn from those
    lapsed within ``model_active_days`` (docs/model.md, "Who the segments learn from"), so
    the mix of active and lapsed customers settles only after that many periods. Unsettled,
    the lowest load (measured first) scored the second pass and the soak the sixteenth: the
    ARI "fall from the lowest load to the soak" measured the shop's age, not the load.

    >>> settle_rounds(Settings(), Timeline(period_ms=28 * DAY_MS, last=9, days_ms=0, end_ms=0))
    5
    """
    if timeline is None:
        return 0
    return math.ceil(settings.model_active_days * DAY_MS / timeline.period_ms) + 1


def settled(run: Running, rounds: int, timeout: float = 600.0) -> float:
    """Send whole rounds of one pass as fast as possible until ``rounds`` rounds have gone out
    since the subject started (warm-up included); returns the seconds it took."""
    t0 = time.monotonic()
    n, cursor = len(run.pool), run.cursor
    cursor.lanes = 1
    while len(cursor.rounds) - (0 if cursor.pass_sent else 1) < rounds:
        before = run.scrape()  # the rest of the round under way, or a whole one
        run.wait_for(before.done + run.send(1 if cursor.rounds and not cursor.pass_sent else n,
                                            whole_round=True).messages, timeout)
    return round(time.monotonic() - t0, 1)


def drain(run: Running, size: int, timeout: float, others: dict[str, int] | None = None) -> dict[str, Any]:
    """Send ``size`` events as fast as possible, then time the subject draining the rest alone.

    ``others``: the servers it uses (name -> pid), whose CPU over the tail counts
    towards what an event costs the machine (``machine_cpu_us_per_event``).
    """
    start = run.scrape()
    sent = run.send(size)
    produced = run.scrape()
    meter = CpuMeter(run.pids(), others or {})
    end = run.wait_for(start.done + sent.messages, timeout, every=0.05)
    used = meter.seconds()
    cpu = sum(used[name] for name in run.pids())
    tail_events = start.events + sent.events - produced.events
    tail_s = end.at - produced.at
    if tail_events < 0.2 * sent.events or tail_s < 0.5:  # it kept up with the producer
        rate, limited = sent.events / (end.at - start.at), "producer"
    else:
        rate, limited = tail_events / tail_s, "subject"
    return {"max_events_per_s": round(rate), "backlog_events": sent.events,
            "tail_events": int(tail_events), "tail_seconds": round(tail_s, 2),
            "cpu_us_per_event": round(cpu / tail_events * 1e6, 1) if tail_events > 0 else None,
            **machine_cpu(used, tail_events), "limited_by": limited,
            "cores_busy": {k: round(v / tail_s, 2) for k, v in used.items()} if tail_s > 0 else None}


def machine_cpu(used: dict[str, float], events: float) -> dict[str, Any]:
    """CPU per event by process over a drain's tail, their sum, and the rate that sum allows.

    The ceiling is every core busy with nothing but this work (the producer,
    finished by then, not counted): no design with these per-event costs goes faster.
    In ``--short`` mode the other subjects idle on the same broker meanwhile, so
    the broker's share there includes their polling.
    """
    if events <= 0:
        return {"machine_cpu_us_per_event": None, "cpu_ceiling_events_per_s": None}
    per = {name: round(s / events * 1e6, 1) for name, s in used.items()}
    total = sum(used.values()) / events * 1e6
    return {"machine_cpu_us_per_event": {**per, "total": round(total, 1)},
            "cpu_ceiling_events_per_s": round((os.cpu_count() or 1) * 1e6 / total) if total > 0 else None}


def backlog(run: Running, rough_rate: float, tail_seconds: float,
            others: dict[str, int] | None = None) -> dict[str, Any]:
    """Maximum throughput: the rate at which the subject drains a backlog alone.

    The first backlog is sized from the warm-up's rough rate; if its tail is
    too short to time, a second one is sized from the first's measured rate.
    """
    timeout = max(120.0, tail_seconds * 20)
    result = drain(run, int(min(2e6, max(500, rough_rate * tail_seconds * 2))), timeout, others)
    if result["tail_seconds"] < 0.6 * tail_seconds or result["limited_by"] == "producer":
        size = result["max_events_per_s"] * tail_seconds * 1.5
        result = drain(run, int(min(2e6, max(2 * result["backlog_events"], size))), timeout, others)
    return result


def percentiles(h: Histogram) -> dict[str, float]:
    return {f"p{round(q * 100)}_ms": round(h.quantile(q) * 1000, 2) for q in (0.5, 0.95, 0.99)}


def fixed_rate(run: Running, rate: float, seconds: float, whole_pass: bool = False,
               lanes: int = 1) -> dict[str, Any]:
    """Send ``rate`` events/s evenly for ``seconds``; latency of every event of the phase.

    ``whole_pass``: for a subject that keeps memberships, skip to the next round's start
    and send until a round ends, at least one whole round of ``lanes`` passes side by side;
    the quality figure then scores the last round's customers, each with its whole history
    sent at this rate and the event clock at its end (as the in-process benchmark scores
    its customers).
    """
    whole = whole_pass and run.subject.memberships
    if whole:
        run.to_next_round(lanes)
    before = run.scrape()
    since = run.cursor.taken
    t0 = time.monotonic()
    sent = asyncio.run(paced(run.settings, run.records, rate, seconds, tick=run.tick,
                             ends=run.cursor if whole else None))
    elapsed = time.monotonic() - t0
    run.cursor.lanes = 1  # the rounds of later warm-ups and backlogs
    after, behind = finish_phase(run, before.done + sent.messages, max(60.0, elapsed * 5))
    return {"rate": round(rate), "offered_events_per_s": round(sent.events / elapsed),
            "events": sent.events, "seconds": round(elapsed, 1),
            **percentiles(after.minus(before)), "rss_mb": round(run.memory[-1][1], 1),
            "kept_up": behind == 0, "unprocessed_messages": behind,
            **(run.round_quality() if whole else run.quality(since))}


def finish_phase(run: Running, done: float, timeout: float) -> tuple[Scrape, int]:
    """Wait for a phase's messages; a subject that cannot keep up is a result, not a crash."""
    try:
        return run.wait_for(done, timeout), 0
    except TimeoutError:
        s = run.scrape()
        return s, int(done - s.done)


#: the soak keeps up when every message it sent is processed this soon after the producer stops
KEEP_UP_S = 30.0


def soak(run: Running, rate: float, plan: Plan) -> dict[str, Any]:
    """Hold ``rate`` for ``plan.soak_seconds``; latency and memory per window."""
    windows: list[dict[str, float]] = []
    whole = run.subject.memberships  # it ends at a round's end, past soak_seconds if need be
    if whole:
        run.to_next_round(plan.lanes(SOAK_FRACTION))
    first = run.scrape()
    last = [first]
    since = run.cursor.taken
    t0 = time.monotonic()

    def tick() -> None:
        now = run.scrape()
        windows.append({"t_s": round(now.at - t0, 1), "events": now.events - last[0].events,
                        **percentiles(now.minus(last[0])), "rss_mb": round(run.memory[-1][1], 1)})
        last[0] = now

    sent = asyncio.run(paced(run.settings, run.records, rate, plan.soak_seconds, tick=run.tick,
                             every=plan.soak_window, on_tick=tick, ends=run.cursor if whole else None))
    stopped = time.monotonic()
    end, behind = finish_phase(run, first.done + sent.messages, 60)
    # the "keeps up": the lag back to 0 within KEEP_UP_S of the producer stopping
    catch_up = round(time.monotonic() - stopped, 1) if behind == 0 else None
    # the last round, sent whole (a full run's soak sends many)
    return {**summarize_soak(windows, rate, sent.events, round(stopped - t0, 1)),
            "kept_up": catch_up is not None and catch_up <= KEEP_UP_S,
            "catch_up_s": catch_up, "unprocessed_messages": behind,
            "dead_letters": end.dead_letters,  # the engine's, since it started
            **(run.round_quality() if whole else run.quality(since))}


def summarize_soak(windows: list[dict[str, float]], rate: float, sent: int,
                   seconds: float) -> dict[str, Any]:
    """Memory growth after warm-up (first fifth of the windows) and latency drift."""
    rss = [w["rss_mb"] for w in windows]
    p99 = [w["p99_ms"] for w in windows if w["events"] > 0]
    warm = max(1, len(rss) // 5)
    start, end = round(median(rss[:warm] or [0.0]), 1), round(median(rss[-warm:] or [0.0]), 1)
    half = len(p99) // 2
    return {
        "seconds": seconds, "rate": round(rate), "events": sent, "windows": windows,
        "rss_mb_after_warmup": start, "rss_mb_end": end,
        "rss_growth": round(end / start - 1, 4) if start else None,
        "p99_ms_first_half": round(median(p99[:half]), 2) if half else None,
        "p99_ms_second_half": round(median(p99[half:]), 2) if p99[half:] else None,
        "p99_ms_worst_window": round(max(p99), 2) if p99 else None,
    }


def memory_summary(run: Running) -> dict[str, Any]:
    mb = [m for _, m in run.memory if m > 0]
    t0 = run.memory[0][0] if run.memory else 0.0
    step = max(1, len(run.memory) // 200)  # keep the JSON small
    return {"rss_mb_start": round(mb[0], 1), "rss_mb_peak": round(max(mb), 1),
            "rss_mb_end": round(mb[-1], 1),
            "series": [[round(t - t0, 1), round(m, 1)] for t, m in run.memory[::step]]}


def measure(run: Running, plan: Plan, rough: float, say: Callable[[str], None],
            others: dict[str, int] | None = None) -> dict[str, Any]:
    name = run.subject.name
    out: dict[str, Any] = {"label": run.subject.label, "envelope": run.subject.envelope}
    out.update(backlog(run, rough, plan.tail_seconds, others))
    say(f"{name}: {out['max_events_per_s']:,} events/s max "
        f"({out['cpu_us_per_event']} us CPU per event)")
    out["rates"] = []
    for f in FRACTIONS:
        whole = run.subject.name in plan.whole_passes
        r = fixed_rate(run, out["max_events_per_s"] * f, plan.rate_seconds, whole,
                       plan.lanes(f) if whole else 1)
        out["rates"].append({"fraction": f, **r})
        ari = f", ARI {r['quality']['ari']}" if "quality" in r else ""
        say(f"{name}: {f:.0%} = {r['rate']:,}/s -> p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms{ari}")
    out["dead_letters"] = run.scrape().dead_letters  # the load is valid: any is the rig's fault
    return out


def run_bench(plan: Plan, say: Callable[[str], None] = print,
              broker: str = "kafka") -> dict[str, Any]:
    """Every phase of the benchmark; returns the figures (see :mod:`streamseg.bench.report`)."""
    started = time.time()
    load_before = os.getloadavg()
    with DevStack(broker=broker) as stack:
        say(f"broker: {stack.broker_description} at {stack.bootstrap}")
        base = stack.settings()
        pool = Pool.simulate(plan.customers)
        # the pool (hundreds of thousands of objects) lives until the end: out of the
        # collector's reach, or every full collection here pauses the paced producer
        # ~220 ms with records waiting in its buffer, which the subjects' latency counted
        gc.collect()
        gc.freeze()
        say(f"{len(pool):,} simulated events from {plan.customers:,} customers per pass")
        # short: start every subject at once (joining a group takes seconds); full: one at
        # a time, so idle subjects polling the broker do not share the machine with the measured one
        todo = subjects(plan.envelope)
        started_runs = [launch(stack, base, pool, s, plan) for s in todo] if plan.short else []
        if started_runs:
            joined(started_runs)
        valkey_pid = stack.process("valkey").proc.pid  # type: ignore[union-attr]
        servers = {"valkey": valkey_pid,
                   "broker": stack.process("broker").proc.pid}  # type: ignore[union-attr]
        results: dict[str, Any] = {}
        engine: Running | None = None
        for i, subject in enumerate(todo):
            run = started_runs[i] if started_runs else launch(stack, base, pool, subject, plan)
            if not started_runs:
                joined([run])
            rough = warm_up(run, plan.warmup_events)
            if isinstance(run, Pair):
                shared(run, 50)
            fits = subject.memberships and plan.value_fit  # an engine: its first fit first
            waited = value_fitted(run, plan.warmup_events) if fits else None
            if fits:
                say(f"{subject.name}: value model " + (f"fitted after {waited} s of warm-up"
                                                       if waited is not None else "not fitted"))
            settle = settle_rounds(run.settings, plan.timeline(pool, base)) \
                if subject.name in plan.whole_passes else 0
            settling = settled(run, settle) if settle else None
            if settle:
                say(f"{subject.name}: {settle} rounds sent (a settled mix of active and lapsed "
                    f"customers) in {settling} s")
            v0 = cpu_seconds(valkey_pid)
            results[subject.name] = measure(run, plan, rough, say, servers)
            if fits:
                results[subject.name]["value_fit_wait_s"] = waited
            if settle:
                results[subject.name]["settle"] = {"rounds": settle, "seconds": settling}
            results[subject.name]["valkey_cpu_s"] = round(cpu_seconds(valkey_pid) - v0, 2)
            if subject.name == "engine":
                engine = run  # kept for the soak
            else:
                results[subject.name]["memory"] = memory_summary(run)
                run.stop()
        assert engine is not None
        soak_result = None
        if plan.soak_seconds > 0:
            rate = results["engine"]["max_events_per_s"] * SOAK_FRACTION
            say(f"soak: {rate:,.0f} events/s for {plan.soak_seconds:.0f}s")
            soak_result = soak(engine, rate, plan)
        results["engine"]["memory"] = memory_summary(engine)
        engine.proc.stop()
        say("quality: the in-process benchmark on the pool's personas")
        reference = in_process_reference(pool, base.redis_url)
    return {
        "mode": "short" if plan.short else "full",
        "broker": describe_broker(broker),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                    "python": sys.version.split()[0]},
        "workload": {"customers_per_pass": plan.customers, "events_per_pass": len(pool),
                     "event_time": event_time(plan, pool, base), "partitions": base.topic_partitions,
                     "envelope_events": plan.envelope, "batch_max_messages": base.batch_max,
                     "fetch_max_wait_ms": base.fetch_max_wait_ms, "value_fit": plan.value_fit,
                     "lane_share": plan.lane_share,
                     "paced_tick_ms": round(tick_for(stack.broker) * 1000, 3)},
        "subjects": results,
        "soak": soak_result,
        "quality_in_process": reference,
    }


def event_time(plan: Plan, pool: Pool, base: Settings) -> dict[str, Any]:
    """How the load's events were timed, for ``bench.json`` and the line under ``bench.md``'s title."""
    timeline = plan.timeline(pool, base)
    if timeline is None:
        return {"kind": "send", "note": "every event stamped with its send time"}
    return {"kind": "simulated", "period_days": timeline.period_ms / DAY_MS,
            "first_pass_start": iso(timeline.start_ms(0)), "passes_room": timeline.last + 1,
            "subject_settings": SIMULATED_TIME}


def command_line(short: bool, soak_seconds: float | None, broker: str = "kafka") -> str:
    parts = ["streamseg bench"] + (["--short"] if short else [])
    if broker != "kafka":
        parts.append(f"--broker {broker}")
    if soak_seconds is not None:
        parts.append(f"--soak {soak_seconds:g}")
    return " ".join(parts)


def main(short: bool, soak_seconds: float | None, out: Path, broker: str = "kafka") -> int:
    """``streamseg bench``: run, save the three files under ``out``, print the table."""
    from streamseg.bench.report import finish, markdown, require_plotting, write

    require_plotting()
    plan = Plan.make(short, soak_seconds)
    t0 = time.monotonic()
    say = lambda m: print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True)  # noqa: E731
    # a DevStackError is the command's one line (streamseg.cli_errors)
    figures = finish(run_bench(plan, say=say, broker=broker), command_line(short, soak_seconds, broker))
    paths = write(figures, out)
    print(markdown(figures))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
