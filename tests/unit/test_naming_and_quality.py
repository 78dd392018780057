"""Segment naming rules and the adjusted Rand index (scikit-learn's, under the name callers use)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamseg.features.registry import MODEL_FEATURES
from streamseg.quality import adjusted_rand_index
from streamseg.segmenting.naming import ARCHETYPES, name_segments


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
