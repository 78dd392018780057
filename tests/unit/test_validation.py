"""Segment validation on the leader's sample: silhouette, members, stability, flags."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from streamseg.segmenting.model import SegmentModel
from streamseg.segmenting.validation import catalog_validation, measure
from streamseg.settings import Settings


def model(centres: list[list[float]], version: int = 1, ids: list[int] | None = None) -> SegmentModel:
    c = np.array(centres, dtype=float)
    d = c.shape[1]
    ids = ids or list(range(len(c)))
    return SegmentModel(version, [f"f{i}" for i in range(d)], np.zeros(d), np.ones(d), ids, c,
                        np.ones(len(c)), max(ids) + 1)


def blobs(centres: list[list[float]], n: list[int], spread: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(c, spread, (k, len(c))) for c, k in zip(centres, n, strict=True)])


def flags(m: SegmentModel, rows: np.ndarray, previous: SegmentModel | None = None) -> dict[int, list[str]]:
    s = Settings()
    v = catalog_validation(measure(m, previous, rows, seed=0), s.segment_min_share,
                           s.segment_min_silhouette)
    return {sid: list(r.flags) for sid, r in v.items()}


def test_separated_segments__score_high_and_raise_no_flag() -> None:
    centres = [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]]
    m = model(centres)
    v = measure(m, None, blobs(centres, [300, 300, 300]), seed=0)
    assert v.overall is not None and v.overall > 0.8
    assert min(v.silhouette.values()) > 0.8
    assert v.members == {0: 300, 1: 300, 2: 300}
    assert v.stability == {} and v.previous_version is None  # no version to compare with
    assert flags(m, blobs(centres, [300, 300, 300])) == {0: [], 1: [], 2: []}


def test_two_centres_cutting_one_blob__are_flagged_weak() -> None:
    """Two centres halve one homogeneous 8-D blob: their members are nearly as near the other
    half as their own (silhouette ~0.08), while the separate blob scores ~0.63."""
    d = 8
    far, a, b = [10.0] + [0.0] * (d - 1), [0.0, 0.2] + [0.0] * (d - 2), [0.0, -0.2] + [0.0] * (d - 2)
    m = model([far, a, b])
    rows = blobs([far, [0.0] * d], [300, 600], spread=1.0)
    v = measure(m, None, rows, seed=0)
    assert v.silhouette[0] > 0.5
    assert max(v.silhouette[1], v.silhouette[2]) < Settings().segment_min_silhouette
    assert flags(m, rows) == {0: [], 1: ["weak"], 2: ["weak"]}


def test_a_segment_under_the_minimum_share__is_flagged_small() -> None:
    centres = [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]]
    rows = blobs(centres, [500, 500, 10])  # 10 of 1010: under 2 %
    assert flags(model(centres), rows) == {0: [], 1: [], 2: ["small"]}


def test_an_empty_segment__counts_zero_members_and_is_small() -> None:
    m = model([[0.0], [8.0], [100.0]])
    v = measure(m, None, blobs([[0.0], [8.0]], [50, 50]), seed=0)
    assert v.members[2] == 0 and 2 not in v.silhouette
    assert flags(m, blobs([[0.0], [8.0]], [50, 50]))[2] == ["small"]


def test_stability__share_of_the_previous_versions_members_kept() -> None:
    rows = np.linspace(-4.0, 4.0, 801).reshape(-1, 1)  # boundary moves from 0 to 1
    before = model([[-2.0], [2.0]], version=3)
    after = model([[-1.5], [3.5]], version=4)
    v = measure(after, before, rows, seed=0)
    assert v.previous_version == 3
    assert v.stability[0] == 1.0  # every member of 0 stays in 0
    assert v.stability[1] == pytest.approx(300 / 400, abs=0.01)  # (0, 1] moved to segment 0


def test_stability__none_for_a_segment_born_in_this_version() -> None:
    rows = blobs([[0.0], [8.0]], [100, 100])
    before = model([[0.0], [8.0]], version=1, ids=[0, 1])
    after = model([[0.0], [7.0], [9.0]], version=2, ids=[0, 1, 2])
    v = measure(after, before, rows, seed=0)
    assert set(v.stability) == {0, 1} and v.stability[0] == 1.0
    assert catalog_validation(v, 0.02, 0.05)[2].stability is None


def test_silhouette__is_sklearns_on_the_standardized_inputs() -> None:
    centres = [[0.0, 10.0], [4.0, 30.0]]
    rows = blobs(centres, [200, 150], spread=3.0)
    m = SegmentModel(1, ["a", "b"], np.array([2.0, 20.0]), np.array([4.0, 100.0]), [0, 1],
                     np.array([[-1.0, -1.0], [1.0, 1.0]]), np.ones(2), 2)
    v = measure(m, None, rows, seed=0)
    z = m.scale(rows)
    labels = np.sqrt(((z[:, None, :] - m.centers[None]) ** 2).sum(2)).argmin(1)
    assert v.overall == pytest.approx(silhouette_score(z, labels))


def test_silhouette__on_a_seeded_subsample_beyond_the_limit() -> None:
    from streamseg.segmenting.validation import SILHOUETTE_ROWS

    centres = [[0.0], [3.0]]
    rows = blobs(centres, [SILHOUETTE_ROWS, SILHOUETTE_ROWS // 2], spread=1.0)
    m = model(centres)
    first, again = measure(m, None, rows, seed=1), measure(m, None, rows, seed=1)
    assert first.overall == again.overall and first.silhouette == again.silhouette
    assert sum(first.members.values()) == len(rows)  # members count the whole sample
