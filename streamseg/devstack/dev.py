"""``streamseg dev``: the whole engine on one machine, with a refreshing terminal view.

Starts a broker (Apache Kafka where a JDK and the jars from ``streamseg kafka
fetch`` are present, else the embedded Tansu; ``--broker`` chooses) and a
Valkey server on free ports, creates the topics,
then runs ``streamseg worker`` and ``streamseg generate`` as child processes
and shows segment sizes, names, throughput, dead letters and, because the
generator knows each customer's planted persona, the adjusted Rand index of the
segments against the truth, and the latest drift figures and alerts per window
(with a note on what the truth says an alert shows: population growth, or, for the
churn-risk alerts, which planted personas fill the highest risk band).
A worker that dies is started again with backoff (1 s, doubling up to 30 s), and
the view says so; only Ctrl-C (or ``--duration``) stops everything. The
addresses other commands need (``inspect``, ``forget``, the example service)
are printed as ``export`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streamseg.devstack.processes import DevStack, ManagedProcess, free_port, wait_for_port
from streamseg.devstack.supervise import Supervised
from streamseg.settings import Settings


@dataclass
class Snapshot:
    at: float
    processed: float = 0.0
    dead_letters: dict[str, float] = field(default_factory=dict)
    segments: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (name, size)
    latency_p50_ms: float | None = None
    model_version: float = 0.0
    drift: dict[str, dict[str, float]] = field(default_factory=dict)  # window -> figure -> value
    alerts: set[tuple[str, str]] = field(default_factory=set)  # (window, alert) firing


def scrape(url: str) -> Snapshot | None:
    """Read the worker's /metrics page; None while it is not up yet."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    snap = Snapshot(at=time.monotonic())
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "streamseg_events_total" and s.labels.get("outcome") == "processed":
                snap.processed += s.value
            elif s.name == "streamseg_dead_letters_total":
                snap.dead_letters[s.labels["reason"]] = s.value
            elif s.name == "streamseg_segment_customers":
                snap.segments[s.labels["segment"]] = (s.labels["name"], s.value)
            elif s.name == "streamseg_model_version":
                snap.model_version = s.value
            elif s.name in DRIFT_FIGURES:
                snap.drift.setdefault(s.labels["window"], {})[DRIFT_FIGURES[s.name]] = s.value
            elif s.name == "streamseg_drift_alert" and s.value > 0:
                snap.alerts.add((s.labels["window"], s.labels["alert"]))
    return snap


#: Drift gauges shown in the view, by their column name.
DRIFT_FIGURES = {
    "streamseg_drift_window_customers": "customers",
    "streamseg_drift_composition_shift": "shift",
    "streamseg_drift_psi": "psi",
    "streamseg_drift_js_distance": "js",
    "streamseg_drift_emerging_share": "emerging",
    "streamseg_drift_population_change": "active",
}
#: A window whose active customers grew more than this on its reference is population growth.
GROWTH = 0.15


#: The alerts that watch the highest churn-risk band (streamseg.drift.alerts).
VALUE_ALERTS = frozenset({"high_risk_share", "segment_churn_risk", "value_at_risk"})


def render_drift(snap: Snapshot, high_band: Counter[str] | None = None) -> list[str]:
    """The latest drift report per window, and the alerts it raised; when a window alerts
    while its active population grew (the demo's generator adds customers for weeks, and
    new explorers arrive late), a note says that the drift is population growth. When a
    churn-risk alert fires, a note says which planted personas the highest risk band holds
    (``high_band``: customers in it by planted persona): in the demo that is mostly the
    ``lapsing`` persona going silent, customers really leaving.

    >>> snap = Snapshot(at=0.0, drift={"7d": {"customers": 900, "shift": 0.3, "active": 0.8}},
    ...                 alerts={("7d", "composition_shift")})
    >>> print("\\n".join(render_drift(snap)))  # doctest: +NORMALIZE_WHITESPACE
       drift  customers   shift     psi      js emerging   active  alerts
          7d        900   30.0%   0.000   0.000     0.0%   +80.0%  composition_shift
    note: 7d: 80% more customers active than in the reference window: the alerts show population growth (newcomers), not customers changing behaviour
    """
    if not snap.drift:
        return ["drift: no window closed yet"]
    lines = [f"{'drift':>7}  {'customers':>9} {'shift':>7} {'psi':>7} {'js':>7} {'emerging':>8} "
             f"{'active':>8}  alerts"]
    notes = []
    for window, f in sorted(snap.drift.items(), key=lambda kv: kv[0]):
        alerting = {a for w, a in snap.alerts if w == window}
        firing = ", ".join(sorted(alerting)) or "-"
        growth = f.get("active", 0.0)
        lines.append(f"{window:>7}  {f.get('customers', 0):>9,.0f} {f.get('shift', 0):>7.1%} "
                     f"{f.get('psi', 0):>7.3f} {f.get('js', 0):>7.3f} {f.get('emerging', 0):>8.1%} "
                     f"{growth:>+8.1%}  {firing}")
        if firing != "-" and growth > GROWTH:
            notes.append(f"note: {window}: {growth:.0%} more customers active than in the reference "
                         "window: the alerts show population growth (newcomers), not customers "
                         "changing behaviour")
        if alerting & VALUE_ALERTS and high_band:
            notes.append(f"note: {window}: {high_band_mix(high_band)}")
    return lines + notes


def high_band_mix(high_band: Counter[str]) -> str:
    """Who the highest churn-risk band holds, by planted persona, and what the largest
    persona was planted to do.

    >>> print(high_band_mix(Counter({"lapsing": 300, "bargain_hunter": 50})))
    the high churn-risk band holds 350 customers, planted as lapsing 300 (86%), bargain_hunter 50 (14%); lapsing: Buys like a regular early on, then goes silent after ~40% of the period.
    """
    from streamseg.generate.personas import PERSONAS

    n = sum(high_band.values())
    mix = ", ".join(f"{p} {c:,} ({c / n:.0%})" for p, c in high_band.most_common(3))
    top = high_band.most_common(1)[0][0]
    planted = PERSONAS[top].description if top in PERSONAS else ""
    return (f"the high churn-risk band holds {n:,} customers, planted as {mix}"
            + (f"; {top}: {planted}" if planted else ""))


async def memberships(settings: Settings, ids: list[str]) -> dict[str, tuple[int | None, str | None]]:
    """Each stored customer's segment and published churn-risk band (None: none yet)."""
    from streamseg.features.keys import Keys
    from streamseg.features.store import RedisFeatureStore

    keys = Keys(settings.key_prefix)
    client = RedisFeatureStore.from_url(settings.redis_url, keys, dedup_horizon_days=1,  # cluster too
                                        retention_days=1).client
    try:
        pipe = client.pipeline(transaction=False)
        for cid in ids:
            pipe.hmget(keys.state(cid), ["seg", "val_band"])
        values = await pipe.execute()
    finally:
        await client.aclose()
    return {cid: (None if seg is None else int(float(seg)),
                  band.decode() if isinstance(band, bytes) else band)
            for cid, (seg, band) in zip(ids, values, strict=True) if seg is not None or band is not None}


async def warmup_progress(settings: Settings) -> str | None:
    """"warming up: N of M customers seen" from the worker's status, until it has a model."""
    from streamseg.features.keys import Keys
    from streamseg.features.store import RedisFeatureStore
    from streamseg.segmenting.warmup import warming_up

    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    try:
        return warming_up(await store.worker_statuses())
    finally:
        await store.close()


def against_truth(settings: Settings, truth: dict[str, str]) -> tuple[tuple[float, int], Counter[str]]:
    """The segments' adjusted Rand index against the planted personas (and over how many
    assigned customers), and the customers in the highest churn-risk band by planted persona."""
    from streamseg.quality import adjusted_rand_index

    stored = asyncio.run(memberships(settings, list(truth)))
    high = settings.value_bands[-1][0]
    high_band = Counter(truth[c] for c, (_, band) in stored.items() if band == high)
    ids = [c for c in truth if stored.get(c, (None, None))[0] is not None]
    if len(ids) < 2:
        return (float("nan"), len(ids)), high_band
    ari = adjusted_rand_index([truth[c] for c in ids], [stored[c][0] for c in ids])
    return (ari, len(ids)), high_band


def render(snap: Snapshot, rate: float, ari: tuple[float, int], elapsed: float, clear: bool,
           broker: str = "", notes: tuple[str, ...] = (), warming: str | None = None,
           high_band: Counter[str] | None = None) -> str:
    lines = []
    if clear:
        lines.append("\x1b[2J\x1b[H")
    lines.append(f"streamseg dev — {elapsed:5.0f}s   model v{snap.model_version:.0f}   "
                 f"processed {snap.processed:,.0f} events   {rate:,.0f} events/s"
                 + (f"   broker: {broker}" if broker else ""))
    if warming and not snap.model_version:  # no segment yet: say how far the first model is
        lines.append(warming)
    lines.append(f"ARI vs planted personas: {ari[0]:.3f} over {ari[1]:,} assigned customers")
    total = sum(n for _, n in snap.segments.values()) or 1
    lines.append("")
    lines.append(f"{'segment':>7}  {'name':<42} {'customers':>9}  share")
    for sid, (name, n) in sorted(snap.segments.items(), key=lambda kv: int(kv[0])):
        bar = "█" * int(30 * n / total)
        lines.append(f"{sid:>7}  {name[:42]:<42} {n:>9,.0f}  {n / total:5.1%} {bar}")
    dl = ", ".join(f"{k}={v:,.0f}" for k, v in sorted(snap.dead_letters.items())) or "none"
    lines.append("")
    lines.append(f"dead letters: {dl}")
    lines.append("")
    lines.extend(render_drift(snap, high_band))
    if notes:
        lines.append("")
        lines.extend(n for n in notes if n)
    if clear:
        lines.append("\nCtrl-C stops everything.")
    return "\n".join(lines)


def run_dev(args: argparse.Namespace) -> int:
    # Ctrl-C must stop everything even when started from a background job, whose
    # SIGINT is inherited as "ignored" (Python then installs no handler of its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = args.workdir or Path.cwd() / "streamseg-data"
    workdir.mkdir(parents=True, exist_ok=True)
    stack = DevStack(workdir=workdir, broker=args.broker, kafka_nodes=args.kafka_nodes,
                     redis_cluster=getattr(args, "redis_cluster", False))
    print(f"starting {stack.broker_description} and Valkey (logs in {workdir}) ...", flush=True)
    stack.start()  # a DevStackError is the command's one line (streamseg.cli_errors)
    print(f"broker: {stack.broker_description} at {stack.bootstrap}   "
          f"Valkey: {stack.redis_url}", flush=True)
    print(f"for inspect, forget and examples/offer_service: {client_exports(stack)}", flush=True)
    web_port = free_port()
    env = {**os.environ, **stack.client_env, "STREAMSEG_WEB_PORT": str(web_port),
           "STREAMSEG_LOG_LEVEL": "warn",
           # replayed history: event time runs days per second, so day-long windows
           "STREAMSEG_DRIFT_WINDOWS": os.environ.get("STREAMSEG_DRIFT_WINDOWS", "1d,7d")}
    explorer = f"explorer: http://127.0.0.1:{web_port}/ui/ (sign in with a STREAMSEG_API_TOKENS secret)"
    if not os.environ.get("STREAMSEG_API_TOKENS"):  # the API is closed without a token: open it
        token = secrets.token_urlsafe(24)
        env["STREAMSEG_API_TOKENS"] = f"dev:{token}"
        (workdir / "api-token").write_text(token + "\n")
        print(f"API: curl -H \"Authorization: Bearer $(cat {workdir / 'api-token'})\" "
              f"http://127.0.0.1:{web_port}/v1/segments", flush=True)
        # the page keeps a token given after '#' (never sent to the server) for its tab
        explorer = f"explorer: http://127.0.0.1:{web_port}/ui/#token={token}"
    print(explorer, flush=True)
    settings = stack.settings()
    truth_path = workdir / "truth.csv"
    py = sys.executable
    worker = Supervised(
        ManagedProcess("worker", [py, "-m", "streamseg", "worker"], workdir / "worker.log", env))
    gen_argv = [py, "-m", "streamseg", "generate", "--customers", str(args.customers),
                "--rate", str(args.rate), "--days", str(args.days), "--seed", str(args.seed),
                "--truth", str(truth_path)]
    generator = ManagedProcess("generator", gen_argv, workdir / "generator.log", env)
    try:
        stack.processes.append(worker.start().process)  # the same object across restarts
        wait_for_port(web_port, 60, worker.process.proc)
        stack.processes.append(generator.start())
        notes = (client_exports(stack), explorer)
        return _watch(args, settings, web_port, truth_path, worker, stack.broker_description, notes)
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopping generator, worker, Valkey and broker ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)


def client_exports(stack: DevStack) -> str:
    """``export STREAMSEG_...=...`` for a shell that runs other commands against this stack."""
    return "export " + " ".join(f"{k}={v}" for k, v in stack.client_env.items())


def _watch(args: argparse.Namespace, settings: Settings, web_port: int, truth_path: Path,
           worker: Supervised, broker: str, notes: tuple[str, ...] = ()) -> int:
    from streamseg.generate import read_truth

    started = time.monotonic()
    prev: Snapshot | None = None
    truth: dict[str, str] = {}
    clear = sys.stdout.isatty() and not args.no_view
    while args.duration is None or time.monotonic() - started < args.duration:
        time.sleep(2.0)
        event = worker.poll()
        if event is not None:
            print(event, flush=True)
        snap = scrape(f"http://127.0.0.1:{web_port}/metrics")
        if snap is None:
            continue
        # a restarted worker counts from zero again
        rate = 0.0 if prev is None else max(0.0, snap.processed - prev.processed) / (snap.at - prev.at)
        prev = snap
        if not truth and truth_path.exists():
            truth = read_truth(truth_path)
        ari, high_band = against_truth(settings, truth) if truth else ((float("nan"), 0), Counter())
        warming = None if snap.model_version else asyncio.run(warmup_progress(settings))
        shown = (worker.status(), *notes) if clear else (worker.status(),)  # a cleared screen lost them
        print(render(snap, rate, ari, time.monotonic() - started, clear, broker, shown, warming,
                     high_band), flush=True)
    return 0
