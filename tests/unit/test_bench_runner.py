"""Each bench subject runs in isolation from the others on the one broker and Valkey."""

from __future__ import annotations

from streamseg.bench.report import targets
from streamseg.bench.runner import Plan, subject_settings
from streamseg.settings import Settings


def test_subject_settings__no_topic_is_shared_between_subjects() -> None:
    # a model snapshot or catalog on a shared topic would be adopted by the other subjects' workers
    base, plan = Settings(), Plan.make(True, 0)
    a, b = subject_settings(base, "engine", plan), subject_settings(base, "engine_pair", plan)
    topics = [f for f in Settings.model_fields if f.startswith("topic_") and f not in
              ("topic_partitions", "topic_replication")]
    assert len(topics) >= 8
    for field in topics:
        assert getattr(a, field) != getattr(b, field), field
    assert (a.app_id, a.key_prefix) != (b.app_id, b.key_prefix)


def soak_targets(**soak: object) -> dict[str, dict[str, object]]:
    """The bench's target rows for a run with this soak, by name."""
    rates = [{"fraction": f, "p99_ms": 40.0} for f in (0.25, 0.5, 0.75)]
    figures = {"subjects": {"engine": {"rates": rates}, "engine_batched": {"max_events_per_s": 1}},
               "ratios": {"engine_vs_bare_faust": 1.0, "engine_vs_naive": 5.0},
               "soak": {"rss_growth": 0.01, **soak}}
    return {str(t["target"]): t for t in targets(figures)}


def test_soak_targets__keeping_up_is_the_lag_back_to_0_within_30_s_of_the_producer_stopping() -> None:
    lag = "soak: consumer lag back to 0 after the producer stopped (s)"
    assert soak_targets(catch_up_s=4.2)[lag]["met"] is True
    assert soak_targets(catch_up_s=42.0)[lag] == {"target": lag, "goal": "<= 30", "measured": 42.0,
                                                  "met": False}  # processed, but too late
    assert soak_targets(catch_up_s=None)[lag]["met"] is False  # still behind a minute after


def test_soak_targets__the_worst_window_and_the_drift_between_the_halves() -> None:
    rows = soak_targets(catch_up_s=1.0, p99_ms_worst_window=665.0, p99_ms_first_half=77.12,
                        p99_ms_second_half=129.91)
    assert rows["soak: worst window p99 (ms)"]["met"] is True
    drift = rows["soak: median window p99, second half / first half"]
    assert (drift["measured"], drift["met"]) == (1.68, False)
    assert soak_targets(catch_up_s=1.0, p99_ms_worst_window=1200.0)[
        "soak: worst window p99 (ms)"]["met"] is False
