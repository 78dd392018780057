"""Segment naming rules and the adjusted Rand index (scikit-learn's, under the name callers use)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamseg.features.registry import MODEL_FEATURES
from streamseg.quality import adjusted_rand_index
from streamseg.segmenting.naming import (
    ARCHETYPES,
    AT_RISK_HIGH_VALUE,
    ValueStanding,
    name_reasons,
    name_segments,
)


def archetype_centre(name: str, strength: float = 2.0) -> dict[str, float]:
    """A centre pointing straight at one archetype's rule."""
    return {f: strength * w for f, w in ARCHETYPES[name].items()}


# --------------------------------------------------------------------------- naming


def test_archetype_rules__only_use_model_features() -> None:
    for name, rule in ARCHETYPES.items():
        assert set(rule) <= set(MODEL_FEATURES), name


@pytest.mark.parametrize("archetype", ARCHETYPES)
def test_centre_matching_an_archetype__gets_its_name(archetype: str) -> None:
    assert name_segments({4: archetype_centre(archetype)}) == {4: archetype}


def test_one_centre_per_archetype__each_gets_its_own_name() -> None:
    names = list(ARCHETYPES)
    centers = {i: archetype_centre(n) for i, n in enumerate(names)}
    assert name_segments(centers) == dict(enumerate(names))


def test_names__are_unique_when_several_centres_fit_the_same_archetype() -> None:
    centers = {0: archetype_centre("Bargain hunters", 1.0),
               1: archetype_centre("Bargain hunters", 3.0),
               2: archetype_centre("Bargain hunters", 2.0)}
    names = name_segments(centers)
    assert names[1] == "Bargain hunters"  # the best-scoring centre wins the name
    assert len(set(names.values())) == 3
    assert list(names.values()).count("Bargain hunters") == 1


def test_flat_centres__get_fallback_names_with_their_id() -> None:
    centers = {0: dict.fromkeys(MODEL_FEATURES, 0.0), 1: {}, 2: dict.fromkeys(MODEL_FEATURES, 0.0)}
    names = name_segments(centers)
    assert names[1] == "Segment 1"
    assert names[0].startswith("Segment 0 (") and names[2].startswith("Segment 2 (")
    assert len(set(names.values())) == 3
    assert not set(names.values()) & set(ARCHETYPES)


def test_fallback_name__cites_the_most_distinctive_feature_with_its_sign() -> None:
    centers = {5: {"monetary_30d": 0.1, "tenure_days": 0.3, "pages_per_session": -0.6}}
    assert name_segments(centers) == {5: "Segment 5 (pages_per_session -0.6sd)"}


def test_archetype_below_min_score__falls_back() -> None:
    centre = {"refund_rate": 0.7}
    assert name_segments({0: centre}) == {0: "Segment 0 (refund_rate +0.7sd)"}
    assert name_segments({0: centre}, min_score=0.5) == {0: "Serial returners"}


def test_names__are_returned_sorted_by_segment_id() -> None:
    names = name_segments({9: {}, 2: archetype_centre("At-risk"), 5: {}})
    assert list(names) == [2, 5, 9]


@settings(max_examples=200, deadline=None, database=None)
@given(st.dictionaries(
    st.integers(0, 30),
    st.dictionaries(st.sampled_from(MODEL_FEATURES), st.floats(-5, 5, allow_nan=False), max_size=8),
    max_size=12,
))
def test_any_centres__get_one_unique_name_each(centers: dict[int, dict[str, float]]) -> None:
    names = name_segments(centers)
    assert set(names) == set(centers)
    assert len(set(names.values())) == len(names)
    assert all(name.strip() for name in names.values())


# --------------------------------------------------------------------------- quality


@pytest.mark.parametrize(
    ("truth", "pred", "ari"),
    [
        ([0, 0, 1, 1], [1, 1, 0, 0], 1.0),
        ([0, 0, 1, 1], [0, 1, 0, 1], -0.5),
        ([0, 0, 0, 0], [0, 0, 0, 0], 1.0),
        ([0, 0, 0, 0], [0, 1, 2, 3], 0.0),
        ([0, 1, 2, 3], [0, 1, 2, 3], 1.0),
        ([0, 1, 2, 3], [0, 0, 0, 0], 0.0),
        ([0, 1], [1, 0], 1.0),
        ([0, 1], [0, 0], 0.0),
        ([0], [5], 1.0),
    ],
    ids=["swapped", "crossed", "one-cluster-each", "one-vs-singletons", "all-singletons",
         "singletons-vs-one", "n2-swapped", "n2-split-vs-one", "n1"],
)
def test_adjusted_rand_index__is_a_number_on_degenerate_cases(
    truth: list[int], pred: list[int], ari: float
) -> None:
    """Callers (the dev dashboard, the clusterer bench) print it: never NaN, whatever the input."""
    assert adjusted_rand_index(truth, pred) == pytest.approx(ari)


def test_adjusted_rand_index__is_label_permutation_invariant_and_symmetric() -> None:
    rng = random.Random(3)
    truth = [rng.randrange(4) for _ in range(200)]
    pred = [rng.randrange(3) for _ in range(200)]
    renamed = [{0: "x", 1: "y", 2: "z"}[p] for p in pred]
    assert adjusted_rand_index(truth, pred) == pytest.approx(adjusted_rand_index(truth, renamed))
    assert adjusted_rand_index(truth, pred) == pytest.approx(adjusted_rand_index(pred, truth))
    assert adjusted_rand_index(truth, truth) == 1.0


def test_adjusted_rand_index__rejects_labelings_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        adjusted_rand_index([0, 1, 1], [0, 1])


# -- "At-risk high-value": from the segments' customer value ---------------------------------

def standing(risk: float, spend: float) -> ValueStanding:
    """A segment's value against a population with mean churn risk 0.4 and spend 200 EUR."""
    return ValueStanding(churn_risk=risk, population_churn_risk=0.4, spend=spend,
                         population_spend=200.0, currency="EUR")


FLAT = {0: archetype_centre("High-value loyalists"), 1: archetype_centre("Bargain hunters"), 2: {}}


def test_segment_at_risk_and_high_spending__is_named_at_risk_high_value_with_why() -> None:
    value = {0: standing(0.65, 520.0), 1: standing(0.3, 150.0), 2: standing(0.4, 200.0)}
    names = name_segments(FLAT, value=value)
    assert names[0] == AT_RISK_HIGH_VALUE and names[1] == "Bargain hunters"
    why = name_reasons(names, FLAT, value)[0]
    assert why == ("mean churn risk 0.65 against 0.40 for all customers; spent 520.00 EUR each "
                   "to date, 2.6x the average customer")


@pytest.mark.parametrize("risk, spend", [(0.65, 250.0), (0.45, 520.0)])
def test_at_risk_but_not_high_value_or_the_reverse__keeps_its_archetype(risk: float, spend: float) -> None:
    names = name_segments(FLAT, value={0: standing(risk, spend)})
    assert names[0] == "High-value loyalists"


def test_at_risk_high_value__goes_to_the_best_fit_only() -> None:
    value = {0: standing(0.6, 400.0), 1: standing(0.8, 600.0)}
    names = name_segments(FLAT, value=value)
    assert names[1] == AT_RISK_HIGH_VALUE and names[0] == "High-value loyalists"


def test_at_risk_high_value__does_not_flip_with_small_moves_around_the_bars() -> None:
    """A holder keeps the name down to the lower bars (risk +0.05, spend x1.25); a segment
    needs +0.10 and x1.5 to take it: measurements jittering around the bars flip nothing."""
    rng = np.random.default_rng(3)
    names = name_segments(FLAT, value={0: standing(0.52, 310.0)})
    assert names[0] == AT_RISK_HIGH_VALUE
    flips = 0
    for _ in range(200):  # risk 0.49 +- 0.03, spend 290 +- 30: about the entry bars
        v = {0: standing(0.49 + rng.uniform(-0.03, 0.03), 290.0 + rng.uniform(-30, 30))}
        nxt = name_segments(FLAT, previous=names, value=v)
        flips += nxt[0] != names[0]
        names = nxt
    assert flips == 0
    # well below the lower bars, the name goes, and the archetype comes back
    names = name_segments(FLAT, previous=names, value={0: standing(0.42, 210.0)})
    assert names[0] == "High-value loyalists"
    # not measured (no value model yet, or between measurements): the holder keeps it
    held = name_segments(FLAT, previous={0: AT_RISK_HIGH_VALUE}, value=None)
    assert held[0] == AT_RISK_HIGH_VALUE


def test_naming_twice_with_the_same_evidence__changes_no_name() -> None:
    """The leader renames (a new model version) only when a name would change: naming
    the same centres and value again must give the same names."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        centers = {i: {f: float(rng.normal(0, 1.2)) for f in MODEL_FEATURES} for i in range(6)}
        value = {i: standing(float(rng.uniform(0.2, 0.8)), float(rng.uniform(100, 600)))
                 for i in range(6)}
        names = name_segments(centers, value=value)
        assert name_segments(centers, previous=names, value=value) == names


def test_name_reasons__say_which_inputs_made_an_archetype() -> None:
    reasons = name_reasons({0: "High-value loyalists"}, {0: {"monetary_30d": 2.0,
                                                           "purchase_frequency_30d": 1.5}})
    assert reasons[0] == ("'High-value loyalists' fits best: its rule scores 3.5 here (monetary_30d "
                          "+2.0sd x 1, purchase_frequency_30d +1.5sd x 1, cart_conversion +0.0sd x "
                          "0.5); names go to the best-scoring fits of at least 0.75, each name once.")
