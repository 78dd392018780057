"""Every feature declares what it is: name, source, unit, window (and half-life), transform, scaling."""

from __future__ import annotations

import pytest

from streamseg.features.registry import FEATURES, HALFLIFE_DAYS, Feature


@pytest.mark.parametrize("feat", FEATURES, ids=lambda f: f.name)
def test_every_feature__declares_source_unit_window_transform_and_scaling(feat: Feature) -> None:
    assert feat.name and feat.unit and feat.description
    assert feat.source in ("click", "transaction", "any")
    assert feat.transform in ("none", "log1p")
    assert feat.scaling == ("standard" if feat.in_model else "none")
    if feat.window.startswith("decayed"):
        assert feat.halflife_days == HALFLIFE_DAYS  # the store decays every counter alike
        assert f"{HALFLIFE_DAYS:g}-day half-life" in feat.window
    else:
        assert feat.window in ("point", "lifetime") and feat.halflife_days is None


def test_a_decayed_feature_without_a_half_life__is_refused() -> None:
    with pytest.raises(ValueError, match="halflife_days"):
        Feature("x", "any", "n", "decayed, 30-day half-life", "a feature", lambda s, n: 0.0)
