"""Cost per event and quality of every clusterer on the generator's personas.

Customers are simulated (``streamseg.generate``), their features derived from
the events with the reference accumulator and the registry (17 model inputs),
then each clusterer, built from the default settings as a worker builds it
(``N_SEGMENTS`` = the number of personas), learns the customers' vectors in
shuffled passes (a stand-in for a stream of customer updates) and assigns all
of them in batches. Figures per clusterer:
learn and assign cost per event, the cost of one macro-cluster refresh, the
segments found and the adjusted Rand index against the planted personas.
Costs are CPU time of this process (``time.process_time``), so other work on a
shared machine inflates them less than it would wall-clock figures.

Baselines in the same run: River's own per-event path (``learn_one`` then
``predict_one``, which reruns the macro step; on a copy of the trained model),
and offline k-means (scikit-learn, k = number of personas) as a quality ceiling.
Prints and saves load_tests/results/clusterers.json and clusterers.md.

    python load_tests/clusterer_bench.py [--customers 2000] [--passes 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from river import cluster
from sklearn.cluster import KMeans

from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.features.reference import accumulate
from streamseg.features.registry import DAY_MS, HALFLIFE_DAYS, MODEL_FEATURES, derive, model_input
from streamseg.generate import assign_personas, simulate
from streamseg.quality import adjusted_rand_index
from streamseg.segmenting import factory
from streamseg.segmenting.base import Segmenter
from streamseg.segmenting.river_stream import StreamSegmenter
from streamseg.settings import Settings

RESULTS = Path(__file__).parent / "results"
END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BATCH = 500


def persona_vectors(customers: int, days: float, seed: int) -> tuple[list[dict[str, float]], list[str]]:
    """Model inputs of every simulated customer at the end of the period, and its persona."""
    truth = assign_personas(customers, seed=seed)
    events: dict[str, list[Event]] = defaultdict(list)
    for ev in simulate(truth, days=days, end_ms=END_MS, seed=seed):
        model = ClickEvent if ev.topic_role == "clickstream" else TransactionEvent
        events[ev.customer_id].append(model.model_validate(ev.payload))
    cids = sorted(events)
    states = [accumulate(events[c], horizon_ms=days * DAY_MS, halflife_ms=HALFLIFE_DAYS * DAY_MS)
              for c in cids]
    return [model_input(derive(s, END_MS)) for s in states], [truth[c] for c in cids]


def timed_learn(seg: Segmenter, stream: list[dict[str, float]]) -> float:
    started = time.process_time()
    for x in stream:
        seg.learn(x)
    return (time.process_time() - started) / len(stream)


def timed_assign(seg: Segmenter, xs: list[dict[str, float]]) -> tuple[float, list[int]]:
    started = time.process_time()
    ids = [a.segment_id for i in range(0, len(xs), BATCH) for a in seg.assign_many(xs[i : i + BATCH])]
    return (time.process_time() - started) / len(xs), ids


def river_per_event(seg: Segmenter, stream: list[dict[str, float]]) -> float | None:
    """River's own path, learn_one then predict_one per event, on a copy of the trained model.

    CluStream's copy gets River's default ``time_gap`` back, so River's own
    macro step runs in ``learn_one`` (the adapter switches it off).
    """
    if not isinstance(seg, StreamSegmenter):
        return None
    model, scaler = copy.deepcopy(seg.model), copy.deepcopy(seg.scaler)
    if isinstance(model, cluster.CluStream):
        model.time_gap = cluster.CluStream().time_gap
    started = time.process_time()
    for x in stream:
        scaler.learn_one(x)
        z = scaler.transform_one(x)
        model.learn_one(z)
        model.predict_one(z)
    return (time.process_time() - started) / len(stream)


def refresh_cost(seg: Segmenter, repeats: int = 5) -> float | None:
    if not isinstance(seg, StreamSegmenter):
        return None
    started = time.process_time()
    for _ in range(repeats):
        seg.refresh()
    return (time.process_time() - started) / repeats


def bench(kind: str, xs: list[dict[str, float]], truth: list[str], passes: int,
          seed: int) -> dict[str, Any]:
    seg = factory.from_settings(Settings(clusterer=kind, n_segments=len(set(truth))), MODEL_FEATURES)
    rng = np.random.default_rng(seed)
    stream = [xs[i] for _ in range(passes) for i in rng.permutation(len(xs))]
    learn_s = timed_learn(seg, stream)
    assign_s, ids = timed_assign(seg, xs)
    river_s = river_per_event(seg, stream[:300])
    return {
        "clusterer": kind,
        "learn_ms_per_event": learn_s * 1e3,
        "assign_ms_per_event": assign_s * 1e3,
        "refresh_ms": None if (r := refresh_cost(seg)) is None else r * 1e3,
        "river_learn_predict_ms_per_event": None if river_s is None else river_s * 1e3,
        "segments": len(seg.centers()),
        "version": seg.version,
        "ari": adjusted_rand_index(truth, ids),
    }


def offline_kmeans_ari(xs: list[dict[str, float]], truth: list[str], seed: int) -> float:
    m = np.array([[x[f] for f in MODEL_FEATURES] for x in xs])
    std = m.std(0)
    z = (m - m.mean(0)) / np.where(std > 0, std, 1.0)
    labels = KMeans(len(set(truth)), n_init=10, random_state=seed).fit_predict(z)
    return adjusted_rand_index(truth, labels.tolist())


def markdown(rows: list[dict[str, Any]], baseline_ari: float, meta: dict[str, Any]) -> str:
    def fmt(v: float | None, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    out = [f"Clusterers on {meta['customers']} simulated customers x {meta['passes']} passes, "
           f"{len(MODEL_FEATURES)} features, default settings; CPU milliseconds.", "",
           "| clusterer | learn ms/event | assign ms/event | refresh ms | River learn+predict ms/event "
           "| segments | ARI |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r['clusterer']} | {fmt(r['learn_ms_per_event'])} | {fmt(r['assign_ms_per_event'], 4)} "
            f"| {fmt(r['refresh_ms'], 1)} | {fmt(r['river_learn_predict_ms_per_event'])} "
            f"| {r['segments']} | {r['ari']:.3f} |" for r in rows]
    out += ["", f"Offline k-means (scikit-learn, k={meta['personas']}, all data at once): "
            f"ARI {baseline_ari:.3f}."]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--days", type=float, default=90.0)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", nargs="*", default=sorted(factory.SEGMENTERS))
    args = ap.parse_args()

    started = time.process_time()
    xs, truth = persona_vectors(args.customers, args.days, args.seed)
    print(f"{len(xs)} customers simulated and derived in {time.process_time() - started:.1f} s CPU")
    rows = []
    for kind in args.only:
        rows.append(bench(kind, xs, truth, args.passes, args.seed))
        print(json.dumps(rows[-1]))
    baseline = offline_kmeans_ari(xs, truth, args.seed)
    meta = {"customers": len(xs), "personas": len(set(truth)), "passes": args.passes,
            "days": args.days, "seed": args.seed}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "clusterers.json").write_text(json.dumps(
        {**meta, "offline_kmeans_ari": baseline, "clusterers": rows}, indent=2))
    table = markdown(rows, baseline, meta)
    (RESULTS / "clusterers.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
