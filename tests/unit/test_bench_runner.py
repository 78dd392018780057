"""Each bench subject runs in isolation from the others on the one broker and Valkey."""

from __future__ import annotations

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
