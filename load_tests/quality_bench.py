"""Segment quality against the generator's planted personas, with its baselines (issue 4).

    python load_tests/quality_bench.py [--customers 3000 --days 120 --seed 7 --personas default]
    python load_tests/quality_bench.py --n-segments auto [--personas all]

Generates a synthetic stream from planted personas, runs the real
:class:`~streamseg.engine.Engine` on a real Valkey over it in event-time order
(batches of ``--batch`` events; every simulated day the re-scoring sweep and
the leader's re-fit on current customers, as the Faust timers do), then
compares in one run:

- **online**: the engine's memberships at the end of the stream (after a last
  sweep, so every customer is evaluated as of the same time) against the truth;
- **offline**: scikit-learn KMeans (same k, ``n_init=10``) fitted on the final
  feature table, standardized: the best case these features allow;
- **naive**: River KMeans fed the same stream of customer updates on raw,
  unscaled features: what plugging River in without care gives.

ARI and NMI are scikit-learn's. With ``--n-segments auto`` the engine chooses k
itself (``STREAMSEG_N_SEGMENTS=auto``); the offline reference keeps the planted
k, and the k chosen (at the end of the stream and after the stationary rounds)
and every change of k on the way are reported. It also measures, after the warm-up (the first
``--warmup-frac`` of the period):

- **flip rate**: membership changes of already-assigned customers per customer
  per 30 days of event time, and per 1,000 events;
- **id stability**: time stops at the end of the stream (a stationary stream: the
  same customers, the same features) and, ``--stationary-rounds`` times, the
  engine re-scores and re-learns every customer and the leader re-fits; stability
  is the share of customers whose segment id is unchanged from one round to the
  next (worst round), with the model versions the rounds went through. The
  engine's own memberships are compared, so its identity matching and
  anti-flapping margin are what is measured.

Figures are printed and saved to ``load_tests/results/quality.json`` and
``quality.md``. No broker takes part (none is started); the results say so.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `common`, also when a test loads this file

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
from common import NO_BROKER, announce, run_script, valkey_only
from prometheus_client import CollectorRegistry
from river import cluster
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

from streamseg.engine import Engine, InMessage, OutRecord, build_segmenter
from streamseg.features.keys import Keys
from streamseg.features.registry import MODEL_FEATURES, derive, model_input, original_value
from streamseg.features.store import RedisFeatureStore, parse_state
from streamseg.generate import PERSONAS, assign_personas, simulate
from streamseg.generate.personas import DEFAULT_WEIGHTS
from streamseg.metrics import Metrics
from streamseg.rescore import sweep
from streamseg.segmenting.base import Assignment, Segmenter, Vector
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS

END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed end keeps runs reproducible
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Config:
    customers: int = 3000
    days: float = 120.0
    seed: int = 7
    personas: str = "default"  # the generator's default mix (k = 6), or "all" planted personas
    batch: int = 500
    warmup_frac: float = 0.25
    rescore_every_days: float = 1.0
    stationary_rounds: int = 4
    rescore: bool = True  # False: no sweep, each customer as of its last event (the old way)
    margin: float | None = None  # STREAMSEG_SEGMENT_MARGIN override (0: no anti-flapping margin)
    auto: bool = False  # STREAMSEG_N_SEGMENTS=auto (else the planted number of personas)

    def weights(self) -> dict[str, float]:
        return {p: 1.0 for p in PERSONAS} if self.personas == "all" else dict(DEFAULT_WEIGHTS)


@dataclass
class Scores:
    ari: float
    nmi: float


@dataclass
class Result:
    config: dict[str, Any]
    k: int
    events: int
    customers_assigned: int
    online: Scores
    offline: Scores
    naive: Scores
    online_vs_offline: float
    flips_per_customer_month: float
    flips_per_1000_events: float
    id_stability: float
    id_stability_rounds: list[float]
    model_versions: list[int]
    seconds: float
    n_segments: str = "planted"  # "auto": the engine chose k
    k_chosen: int = 0  # the model's k at the end of the stream
    k_final: int = 0  # ... and after the stationary rounds
    k_changes: list[list[float]] = field(default_factory=list)  # [day of the period, new k]
    targets: dict[str, bool] = field(default_factory=dict)
    broker: str = NO_BROKER  # the engine runs in-process on Valkey: no broker takes part


# -- the engine's surroundings ------------------------------------------------------


class RecordingPublisher:
    """Keeps the membership changes the engine publishes, tagged with the event clock."""

    def __init__(self, topic: str, clock: Callable[[], float]) -> None:
        self.topic = topic
        self.clock = clock
        self.changes: list[tuple[float, dict[str, Any]]] = []

    async def publish(self, records: Sequence[OutRecord]) -> None:
        now = self.clock()
        self.changes += [(now, orjson.loads(v)) for t, _, v in records if t == self.topic]


class NaiveTee:
    """The engine's segmenter, plus a naive River KMeans fed the same updates, unscaled.

    Every vector the engine learns is also learned, in raw feature units (the
    model transforms undone), by ``cluster.KMeans`` with River's defaults but k.
    """

    def __init__(self, inner: Segmenter, k: int, seed: int) -> None:
        self.inner = inner
        self.naive = cluster.KMeans(n_clusters=k, seed=seed)

    @property
    def ready(self) -> bool:
        return self.inner.ready

    @property
    def version(self) -> int:
        return self.inner.version

    def learn(self, x: Vector) -> None:
        self.inner.learn(x)
        self.naive.learn_one(raw(x))

    def assign_many(self, xs: Sequence[Vector]) -> list[Assignment]:
        return self.inner.assign_many(xs)

    def centers(self) -> dict[int, dict[str, float]]:
        return self.inner.centers()

    def snapshot(self) -> dict[str, Any]:
        return self.inner.snapshot()

    def __getattr__(self, name: str) -> Any:  # anything else the engine may ask of its segmenter
        return getattr(self.inner, name)


def raw(x: Vector) -> dict[str, float]:
    """Model input back in original feature units."""
    return {f: original_value(f, v) for f, v in x.items()}


def model_version(engine: Engine) -> int:
    """The version customers are assigned with (a global model's, when the engine has one)."""
    model = engine.assigner.model
    return int((model.version if model is not None else None) or engine.local.segmenter.version)


# -- the run --------------------------------------------------------------------------


def batches(settings: Settings, truth: dict[str, str], cfg: Config) -> Iterator[list[InMessage]]:
    """The generator's stream as engine input, in event-time order."""
    out: list[InMessage] = []
    for i, ev in enumerate(simulate(truth, days=cfg.days, end_ms=END_MS, seed=cfg.seed)):
        out.append(InMessage(settings.topic(ev.topic_role), 0, i, ev.customer_id.encode(),
                             orjson.dumps(ev.payload)))
        if len(out) >= cfg.batch:
            yield out
            out = []
    if out:
        yield out


async def read_states(store: RedisFeatureStore, keys: Keys, cids: Sequence[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i in range(0, len(cids), 1000):
        chunk = cids[i : i + 1000]
        pipe = store.client.pipeline(transaction=False)
        for cid in chunk:
            pipe.hgetall(keys.state(cid))
        for cid, h in zip(chunk, await pipe.execute(), strict=True):
            if h:
                out[cid] = parse_state([x for kv in h.items() for x in kv])
    return out


@dataclass
class Run:
    events: int
    warmup_ms: float
    events_after_warmup: int
    truth: dict[str, str]
    states: dict[str, dict]  # final state per customer (features + membership)
    now_ms: float
    naive: dict[str, int]  # the naive baseline's segment per customer, as of the end
    changes: list[tuple[float, dict[str, Any]]]
    stability: list[float]
    versions: list[int]
    k_end: int = 0  # the model's k at the end of the stream
    k_final: int = 0  # ... after the stationary rounds
    k_changes: list[list[float]] = field(default_factory=list)


async def run_engine(cfg: Config, redis_url: str) -> Run:
    truth = assign_personas(cfg.customers, seed=cfg.seed, weights=cfg.weights())
    k = len(set(truth.values()))
    settings = Settings(redis_url=redis_url, key_prefix=f"qb{uuid.uuid4().hex[:8]}",
                        n_segments="auto" if cfg.auto else k, seed=cfg.seed)
    if cfg.margin is not None:
        settings = settings.model_copy(update={"segment_margin": cfg.margin})
    keys = Keys(settings.key_prefix)
    store = RedisFeatureStore.from_url(settings.redis_url, keys,
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    tee = NaiveTee(build_segmenter(settings), k, cfg.seed)
    holder: list[Engine] = []
    publisher = RecordingPublisher(settings.topic_segment_updates, lambda: holder[0].clock.clock_ms)
    engine = Engine(settings, store, tee, publisher, Metrics(CollectorRegistry()))
    holder.append(engine)
    warmup_ms = END_MS - cfg.days * DAY_MS * (1 - cfg.warmup_frac)
    events = after = 0
    k_changes: list[list[float]] = []
    start_ms = END_MS - cfg.days * DAY_MS
    next_sweep = END_MS - cfg.days * DAY_MS + cfg.rescore_every_days * DAY_MS
    try:
        for msgs in batches(settings, truth, cfg):
            await engine.process(msgs)
            events += len(msgs)
            after += len(msgs) if engine.clock.clock_ms >= warmup_ms else 0
            if engine.clock.clock_ms >= next_sweep:
                if cfg.rescore:
                    await sweep(engine, older_than_days=settings.rescore_after_hours / 24.0,
                                batch=settings.rescore_batch)
                await refit(engine)
                k_now = model_k(engine)
                if k_now and (not k_changes or k_changes[-1][1] != k_now):
                    k_changes.append([round((engine.clock.clock_ms - start_ms) / DAY_MS, 1), k_now])
                next_sweep = engine.clock.clock_ms + cfg.rescore_every_days * DAY_MS
        if cfg.rescore:
            await sweep(engine, older_than_days=0.0, batch=1000)  # everyone as of the end
        end_ms = engine.clock.clock_ms
        states = await read_states(store, keys, sorted(truth))
        naive = {c: tee.naive.predict_one(raw(model_input(derive(s, end_ms)))) for c, s in states.items()}
        k_end = model_k(engine)
        stability, versions = await stationary_rounds(engine, store, keys, sorted(truth), cfg)
    finally:
        await store.close()
    return Run(events, warmup_ms, after, truth, states, end_ms, naive, publisher.changes,
               stability, versions, k_end, model_k(engine), k_changes)


def model_k(engine: Engine) -> int:
    """Segments in the global model (0: none yet)."""
    model = engine.assigner.model
    return len(model.ids) if model is not None else 0


async def refit(engine: Engine) -> None:
    """What the Faust leader does every ``STREAMSEG_CATALOG_REFRESH_S``: re-fit on current customers."""
    leader = engine.leader
    proposal = await leader.refine()
    if proposal is not None and engine.assigner.adopt(proposal[0]):
        await leader.publish_catalog(leader.catalog(*proposal))


async def stationary_rounds(engine: Engine, store: RedisFeatureStore, keys: Keys,
                            cids: list[str], cfg: Config) -> tuple[list[float], list[int]]:
    """Re-score and re-learn everyone at a frozen time, re-fit; share of unchanged ids per round."""
    before = await memberships(store, keys, cids)
    versions = [model_version(engine)]
    shares = []
    for _ in range(cfg.stationary_rounds):
        engine.clock.clock_ms += 1.0  # 1 ms later: recency unchanged, but every customer is due again
        await sweep(engine, older_than_days=0.0, batch=1000)
        after = await memberships(store, keys, cids)
        await refit(engine)  # the next round assigns with it
        versions.append(model_version(engine))
        shares.append(sum(before[c] == after.get(c) for c in before) / max(1, len(before)))
        before = after
    return shares, versions


async def memberships(store: RedisFeatureStore, keys: Keys, cids: Sequence[str]) -> dict[str, int]:
    states = await read_states(store, keys, cids)
    return {c: int(s["seg"]) for c, s in states.items() if isinstance(s.get("seg"), float)}


# -- the scores -------------------------------------------------------------------------


def scores(truth: Sequence[str], pred: Sequence[int]) -> Scores:
    return Scores(round(float(adjusted_rand_score(truth, pred)), 4),
                  round(float(normalized_mutual_info_score(truth, pred)), 4))


def evaluate(run: Run, cfg: Config, seconds: float) -> Result:
    cids = sorted(run.states)
    truth = [run.truth[c] for c in cids]
    k = len(set(run.truth.values()))
    online = [int(s["seg"]) if isinstance(s.get("seg"), float) else -1
              for s in (run.states[c] for c in cids)]
    table = [model_input(derive(run.states[c], run.now_ms)) for c in cids]
    x = np.array([[row[f] for f in MODEL_FEATURES] for row in table])
    offline = KMeans(k, n_init=10, random_state=cfg.seed).fit_predict(StandardScaler().fit_transform(x))
    naive = [run.naive[c] for c in cids]
    on, off = scores(truth, online), scores(truth, list(offline))
    flips = [c for t, c in run.changes if t >= run.warmup_ms and c["previous_segment_id"] is not None]
    months = (run.now_ms - run.warmup_ms) / DAY_MS / 30.0
    assigned = sum(s >= 0 for s in online)
    res = Result(
        config=asdict(cfg), k=k, events=run.events, customers_assigned=assigned,
        online=on, offline=off, naive=scores(truth, naive),
        online_vs_offline=round(on.ari / off.ari, 4) if off.ari > 0 else 0.0,
        flips_per_customer_month=round(len(flips) / max(1, assigned) / max(months, 1e-9), 4),
        flips_per_1000_events=round(1000 * len(flips) / max(1, run.events_after_warmup), 4),
        id_stability=round(min(run.stability), 4) if run.stability else float("nan"),
        id_stability_rounds=[round(s, 4) for s in run.stability],
        model_versions=run.versions, seconds=round(seconds, 1),
        n_segments="auto" if cfg.auto else "planted", k_chosen=run.k_end, k_final=run.k_final,
        k_changes=run.k_changes,
    )
    res.targets = {
        "online ARI >= 0.9": on.ari >= 0.9,
        "online ARI >= 0.95 x offline": res.online_vs_offline >= 0.95,
        "id stability >= 99%": res.id_stability >= 0.99,
    }
    if cfg.auto:
        res.targets["auto: k chosen = planted personas"] = run.k_end == k
    return res


# -- output ---------------------------------------------------------------------------------


def markdown(res: Result) -> str:
    c = res.config
    k_line = (f"chosen by the engine (STREAMSEG_N_SEGMENTS=auto): k = {res.k_chosen} at the end "
              f"of the stream, {res.k_final} after the stationary rounds; changes (day: k) "
              + ", ".join(f"{d:g}: {int(k)}" for d, k in res.k_changes)
              if res.n_segments == "auto" else f"k = {res.k}")
    lines = [
        f"Segment quality: {c['customers']:,} customers, {c['days']:g} days, seed {c['seed']}, "
        f"{res.k} planted personas ({c['personas']}), {k_line}, {res.events:,} events; "
        f"broker: {res.broker}",
        "",
        "| model | ARI | NMI |",
        "|---|---|---|",
        f"| online (engine, as of the end) | {res.online.ari:.3f} | {res.online.nmi:.3f} |",
        f"| offline sklearn KMeans, k = {res.k} (best case) | {res.offline.ari:.3f} | {res.offline.nmi:.3f} |",
        f"| naive River KMeans, raw features | {res.naive.ari:.3f} | {res.naive.nmi:.3f} |",
        "",
        "| figure | value |",
        "|---|---|",
        f"| online / offline ARI | {res.online_vs_offline:.3f} |",
        f"| id stability (worst of {len(res.id_stability_rounds)} stationary rounds, model versions "
        f"{'-'.join(map(str, sorted(set(res.model_versions))))}) | {res.id_stability:.2%} |",
        f"| flips per customer per 30 days (after warm-up) | {res.flips_per_customer_month:.3f} |",
        f"| flips per 1,000 events (after warm-up) | {res.flips_per_1000_events:.3f} |",
        f"| customers assigned | {res.customers_assigned:,} |",
        f"| run time | {res.seconds:.0f} s |",
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {name} | {'yes' if ok else 'NO'} |" for name, ok in res.targets.items()],
    ]
    return "\n".join(lines)


def save(res: Result, name: str = "quality", out: Path = RESULTS) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(asdict(res), indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(res) + "\n")
    return out / f"{name}.json", out / f"{name}.md"


def bench(cfg: Config, redis_url: str) -> Result:
    started = time.perf_counter()
    run = asyncio.run(run_engine(cfg, redis_url))
    return evaluate(run, cfg, time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Config()
    ap.add_argument("--customers", type=int, default=d.customers)
    ap.add_argument("--days", type=float, default=d.days)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--personas", choices=("all", "default"), default=d.personas)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--warmup-frac", type=float, default=d.warmup_frac)
    ap.add_argument("--stationary-rounds", type=int, default=d.stationary_rounds)
    ap.add_argument("--no-rescore", dest="rescore", action="store_false",
                    help="no re-scoring sweep: customers as of their last event (before issue 4)")
    ap.add_argument("--margin", type=float, default=None,
                    help="anti-flapping margin (default: the setting's 0.1); --margin 0 shows the "
                         "flip rate without it")
    ap.add_argument("--n-segments", choices=("planted", "auto"), default="planted",
                    help="auto: STREAMSEG_N_SEGMENTS=auto, the engine chooses k (reported); "
                         "planted: k = the planted number of personas")
    ap.add_argument("--redis-url", help="use this Redis/Valkey instead of starting one")
    a = ap.parse_args()
    cfg = Config(customers=a.customers, days=a.days, seed=a.seed, personas=a.personas,
                 batch=a.batch, warmup_frac=a.warmup_frac, stationary_rounds=a.stationary_rounds,
                 rescore=a.rescore, margin=a.margin, auto=a.n_segments == "auto")
    announce(NO_BROKER)
    if a.redis_url:
        res = bench(cfg, a.redis_url)
    else:
        with valkey_only() as stack:
            res = bench(cfg, stack.redis_url)
    print(markdown(res))
    # runs that change a default are saved beside the default run, not over it
    name = "quality" + ("-auto" if cfg.auto else "") + ("-all" if cfg.auto and cfg.personas == "all"
                                                          else "")
    paths = save(res, name if cfg.margin is None else f"{name}-margin-{cfg.margin:g}")
    print(f"\nsaved {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    run_script(main)
