"""``streamseg bench --short``: the real command, on its own Apache Kafka and Valkey.

Timings on a shared machine say nothing, so this checks that every figure is
measured, present and consistent with the others -- never how fast it was.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamseg.bench.report import ratios, targets
from streamseg.devstack.kafka import KAFKA_VERSION

#: the bench runs in the module fixture's setup (181-212 s in CI before the engine's settling rounds, which
#: add 25-50 s; 262 s locally after them), bounded there at 520 s
pytestmark = [pytest.mark.integration, pytest.mark.timeout(580)]

SUBJECTS = {"engine", "engine_batched", "bare_faust", "naive", "engine_pair"}
#: the engine's four whole-pass phases (25/50/75% and the soak, one model between them): their
#: median ARI at least ARI_FLOOR and at most ARI_GAP_FLOOR below the in-process benchmark's, and
#: every one of them at least PHASE_ARI_FLOOR (the send-time load scored 0.0 in every phase).
#: The floors were first set on one run (2026-12-06: 0.394 at the lowest load against 0.481).
#: Ten runs of 2026-12-07 (six short, four full) put one phase's ARI anywhere in 0.13-0.56, the
#: four phases of a run moving together (the model they share sits in one configuration for
#: the run; the leader's re-fits, every 30 s of wall clock, come once per ~25 simulated days
#: here): the lowest load alone was under 0.2 in one of the ten (CI, 0.128), and no run's
#: median was under 0.247 nor any phase under 0.128. docs/performance.md, "Quality under load".
ARI_FLOOR, ARI_GAP_FLOOR, PHASE_ARI_FLOOR = 0.2, -0.25, 0.1


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "streamseg", "bench", "--short", "--out", str(out)],
                          capture_output=True, text=True, timeout=520)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "bench.json").read_text()), proc.stdout


def positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_bench_short__writes_json_markdown_and_png(bench: tuple[Path, dict[str, Any], str]) -> None:
    out, figures, stdout = bench
    png = (out / "bench_latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    md = (out / "bench.md").read_text()
    for name in SUBJECTS:
        assert f"| {name} (" in md
    assert "streamseg bench --short" in md and figures["command"] == "streamseg bench --short"
    assert md.strip() in stdout  # the table is printed too
    # on Apache Kafka by default, and the saved figures say so
    assert figures["broker"] == f"Apache Kafka {KAFKA_VERSION}"
    assert f"on Apache Kafka {KAFKA_VERSION}," in md


def test_bench_short__measures_every_subject(bench: tuple[Path, dict[str, Any], str]) -> None:
    _, figures, _ = bench
    assert set(figures["subjects"]) == SUBJECTS
    for name, s in figures["subjects"].items():
        assert positive(s["max_events_per_s"]), name
        assert positive(s["cpu_us_per_event"]), name
        assert s["tail_events"] > 0 and s["backlog_events"] >= s["tail_events"], name
        assert [r["fraction"] for r in s["rates"]] == [0.25, 0.5, 0.75]
        for r in s["rates"]:
            assert r["rate"] == round(s["max_events_per_s"] * r["fraction"]), (name, r)
            assert positive(r["offered_events_per_s"]) and r["events"] > 0, (name, r)
            assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], (name, r)
        machine = s["machine_cpu_us_per_event"]
        workers = ["subject", "subject_2"] if name == "engine_pair" else ["subject"]
        assert set(machine) == {*workers, *(f"{w}_children" for w in workers), "valkey", "broker",
                                "total"}, name
        assert s["cpu_us_per_event"] == pytest.approx(sum(machine[w] for w in workers), abs=0.15), name
        assert set(s["cores_busy"]) == set(machine) - {"total"}, name
        assert positive(machine["broker"]), name  # every subject fetches and commits
        assert machine["total"] == pytest.approx(sum(v for k, v in machine.items() if k != "total"),
                                                 abs=0.3), name
        cores = os.cpu_count() or 1  # the JSON's total is rounded to 0.1 us
        assert s["cpu_ceiling_events_per_s"] == pytest.approx(cores * 1e6 / machine["total"], rel=0.01)
        mem = s["memory"]
        assert 0 < mem["rss_mb_start"] <= mem["rss_mb_peak"] and positive(mem["rss_mb_end"])
        assert len(mem["series"]) >= 5
    for name in ("engine", "engine_batched", "naive", "engine_pair"):  # these apply every event in Valkey
        assert positive(figures["subjects"][name]["machine_cpu_us_per_event"]["valkey"]), name
    assert figures["subjects"]["engine_batched"]["envelope"] > 1
    assert figures["subjects"]["engine"]["envelope"] == 0


def test_bench_short__ratios_and_targets_come_from_the_measured_numbers(
    bench: tuple[Path, dict[str, Any], str],
) -> None:
    _, figures, _ = bench
    subjects = figures["subjects"]
    assert figures["ratios"] == ratios(subjects)
    assert figures["ratios"]["engine_vs_naive"] == round(
        subjects["engine"]["max_events_per_s"] / subjects["naive"]["max_events_per_s"], 2)
    assert figures["targets"] == targets(figures)
    by_name = {t["target"]: t for t in figures["targets"]}
    assert by_name["engine / bare Faust, single-event messages"]["measured"] == \
        figures["ratios"]["engine_vs_bare_faust"]
    assert by_name["engine p99 latency at 50% of max (ms)"]["measured"] == \
        subjects["engine"]["rates"][1]["p99_ms"]


def test_bench_short__soaks_the_engine_and_reports_memory_growth(
    bench: tuple[Path, dict[str, Any], str],
) -> None:
    _, figures, _ = bench
    soak = figures["soak"]
    assert soak["rate"] == round(figures["subjects"]["engine"]["max_events_per_s"] * 0.5)
    assert len(soak["windows"]) >= 3 and soak["events"] > 0
    assert all(positive(w["rss_mb"]) for w in soak["windows"])
    assert soak["rss_growth"] == round(soak["rss_mb_end"] / soak["rss_mb_after_warmup"] - 1, 4)
    # keeping up is timed from the producer's stop (the lag back to 0 within 30 s)
    assert soak["catch_up_s"] is not None and soak["catch_up_s"] >= 0, soak
    assert soak["kept_up"] == (soak["catch_up_s"] <= 30)
    assert soak["p99_ms_worst_window"] == max(w["p99_ms"] for w in soak["windows"] if w["events"] > 0)


def test_bench_short__paces_load_in_the_brokers_tick(bench: tuple[Path, dict[str, Any], str]) -> None:
    _, figures, stdout = bench
    assert figures["workload"]["paced_tick_ms"] == 2.0  # Apache Kafka's (Tansu keeps 50 ms)
    assert figures["workload"]["fetch_max_wait_ms"] > 0
    assert "sent in ticks of 2 ms" in stdout


def test_bench_short__scores_the_published_memberships_of_the_pools_customers(
    bench: tuple[Path, dict[str, Any], str],
) -> None:
    _, figures, stdout = bench
    per_pass = figures["workload"]["customers_per_pass"]
    phases = [(n, r) for n in ("engine", "engine_batched", "engine_pair")
              for r in figures["subjects"][n]["rates"]]
    for name, phase in [*phases, ("soak", figures["soak"])]:
        q = phase["quality"]
        assert -1.0 <= q["ari"] <= 1.0, (name, q)
        first, last = q["passes"]
        # the phase's customers: every pass it sent from, each at most the pool's customers
        assert 0 < q["assigned"] <= q["customers"] <= per_pass * (last - first + 1), (name, q)
    for name in ("bare_faust", "naive"):  # no memberships of their own to score
        assert all("quality" not in r for r in figures["subjects"][name]["rates"]), name
    ref = figures["quality_in_process"]
    assert -1.0 <= ref["ari"] <= 1.0 and ref["customers"] == per_pass and ref["events"] > 0
    fall = {t["target"]: t for t in figures["targets"]}["ARI fall from lowest load to the soak"]
    engine = figures["subjects"]["engine"]["rates"]
    assert fall["measured"] == round(engine[0]["quality"]["ari"] - figures["soak"]["quality"]["ari"], 4)
    gap = {t["target"]: t for t in figures["targets"]}[
        "engine ARI at the lowest load minus the in-process benchmark's"]
    assert gap["measured"] == round(engine[0]["quality"]["ari"] - ref["ari"], 4)
    assert gap["met"] == (gap["measured"] >= -0.05)
    # the engine's phases and the soak send whole passes, each customer's simulated days spaced
    # as the simulator planted them: the engine's figure is a quality figure, near the reference's
    assert figures["workload"]["event_time"]["kind"] == "simulated"
    # ... in rounds of one pass per 25% of the maximum, side by side: every level moves through
    # the simulated days at the same pace, its rate raised by more customers
    assert figures["workload"]["lane_share"] == 0.25
    # ... after enough whole rounds that the mix of active and lapsed customers the segments
    # learn from has settled: the lowest load is not scored on a younger shop than the soak
    settle = figures["subjects"]["engine"]["settle"]
    assert settle["rounds"] == 5 and engine[0]["quality"]["passes"][0] >= settle["rounds"], settle
    for phase, lanes in zip([*engine, figures["soak"]], [1, 2, 3, 2], strict=True):
        q = phase["quality"]
        assert q["whole_pass"] and q["lanes"] == lanes, q
        assert q["passes"][1] - q["passes"][0] + 1 == lanes and q["customers"] == lanes * per_pass, q
    scored = [phase["quality"]["ari"] for phase in [*engine, figures["soak"]]]
    assert min(scored) >= PHASE_ARI_FLOOR, (scored, ref)
    median = statistics.median(scored)
    assert median >= ARI_FLOOR and median - ref["ari"] >= ARI_GAP_FLOOR, (scored, ref)
    # nothing the load sent was refused (in the future, too old or late)
    for name, s in figures["subjects"].items():
        assert s["dead_letters"] == 0, name
    assert figures["soak"]["dead_letters"] == 0
    assert "Segment quality under load" in stdout and "In-process quality benchmark" in stdout


def test_bench_short__runs_two_workers_in_one_group(bench: tuple[Path, dict[str, Any], str]) -> None:
    _, figures, stdout = bench
    pair, one = figures["subjects"]["engine_pair"], figures["subjects"]["engine"]
    busy = pair["cores_busy"]
    assert positive(busy["subject"]) and positive(busy["subject_2"])  # both workers had partitions
    assert pair["envelope"] == 0 and pair["tail_events"] > 0
    assert figures["ratios"]["engine_pair_vs_engine"] == round(
        pair["max_events_per_s"] / one["max_events_per_s"], 2)
    assert (f"Two workers (engine_pair): {pair['max_events_per_s']:,} events/s against one worker's "
            f"{one['max_events_per_s']:,}") in stdout
