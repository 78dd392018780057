"""The customer-value benchmark, small: the engine ranks churn better than recency alone.

Runs ``load_tests/value_bench.py`` itself (the real engine on the session's real
Valkey, clickstream included, the offline pymc-marketing fits on the same inputs,
purchase days and active days, and the recency rankings) on one seed of 600 planted
customers over 365 days, the last 90 the holdout. Each planted
customer visits at its own pace (:mod:`streamseg.generate.lifecycle`), so a
silence that is long for a fast buyer is short for a slow one: that is what the
model knows and recency does not. Measured 2026-12-06 on seeds 1-3 of this size,
engine / offline / recency AUC: 0.9295 / 0.9284 / 0.9114, 0.9296 / 0.9300 /
0.9145, 0.9317 / 0.9317 / 0.9173: the engine 0.014-0.018 above recency, so the
test asserts a margin of 0.012 (seed 1 is deterministic; the margin leaves room
for a changed fit). Before the pace was planted, seed 1 showed 0.963 against 0.953.
Since the engine reads active days (visits streamed too; 2026-12-06, seed 1, 125 s):
engine / offline (combined) / offline-purchase / recency / recency-active AUC 0.9604 /
0.9603 / 0.9284 / 0.9114 / 0.9314; the margin is kept as it was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from streamseg.devstack import DevStack
from tests.support import load_script

pytestmark = pytest.mark.integration
#: how far the engine's AUC is above recency's at least (see the module docstring)
MARGIN = 0.012


def test_value_bench__engine_ranks_churn_above_recency_and_scores_every_buyer(
    stack: DevStack, tmp_path: Path
) -> None:
    bench = load_script("value_bench")
    cfg = bench.Config(customers=600, days=365.0, holdout_days=90.0, seeds=(1,))
    res = bench.bench(cfg, stack.redis_url)
    bench.save(res, out=tmp_path)

    saved = json.loads((tmp_path / "value.json").read_text())
    mean = saved["mean"]
    assert set(mean) == {"engine", "offline", "offline-purchase", "recency", "recency-active"}
    for name in ("recency-active",):  # rankings only: no totals
        assert math.isfinite(mean[name]["auc"]) and math.isnan(mean[name]["purchases"]), name
    engine = mean["engine"]
    assert engine["unscored"] == 0  # every customer with a calibration order has a value
    for name in ("auc", "purchases", "spend"):
        assert math.isfinite(engine[name]), name
    assert engine["auc"] > mean["recency"]["auc"]
    assert engine["auc"] >= mean["recency"]["auc"] + MARGIN
    assert set(saved["targets"]) == {"auc_within_0.01_of_offline", "auc_0.02_above_recency",
                                     "purchases_within_10pct", "spend_within_15pct"}
    assert "| 1 | engine |" in (tmp_path / "value.md").read_text()
