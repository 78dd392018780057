"""The Segmenter protocol suite: every clusterer registered in the factory must pass it.

The suite iterates over :data:`streamseg.segmenting.factory.SEGMENTERS`, so a
newly registered clusterer is tested without touching this file. Each is
built for the features FEATURES with 3 segments and a warm-up of WARMUP
vectors, plus the hyperparameters its ``_unit_test_params()`` classmethod
names for these small 3-feature blobs (as River's estimator checks do).
Implementations that support persistence expose ``restore(snapshot)`` as a
classmethod. Stream clusterers with a cached macro-cluster step
(:class:`StreamSegmenter` subclasses) also pass the refresh tests at the end,
and a last test runs every clusterer with its defaults on 17 features.

Centres are compared with a brute-force computation in standardized units: the
protocol says centres are z-scores of the population, i.e. of every vector learned.
"""

from __future__ import annotations

import collections
import copy
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from river import cluster

from streamseg.quality import adjusted_rand_index
from streamseg.segmenting import factory
from streamseg.segmenting.base import Assignment, Segmenter
from streamseg.segmenting.river_kmeans import RiverKMeansSegmenter, learn_kmeans
from streamseg.segmenting.river_stream import CluStreamSegmenter, DBSTREAMSegmenter, StreamSegmenter

FEATURES = ["recency", "frequency", "spend"]
WARMUP = 60
REFRESH = 50
COMMON = {"n_segments": 3, "warmup": WARMUP, "seed": 1}



SegmenterClass = type[RiverKMeansSegmenter] | type[StreamSegmenter]


def maker(cls: SegmenterClass) -> Callable[[], Segmenter]:
    """Builds ``cls`` for this suite: common settings plus the class's own test hyperparameters."""
    cadence = {"refresh_every": REFRESH} if issubclass(cls, StreamSegmenter) else {}
    return functools.partial(cls, FEATURES, **COMMON, **cadence, **cls._unit_test_params())


CLASSES: list[SegmenterClass] = list(factory.SEGMENTERS.values())
STREAM_CLASSES = [cls for cls in CLASSES if issubclass(cls, StreamSegmenter)]

# three well-separated blobs; "spend" lives on a 100x larger scale than the rest
BLOB_MEANS = np.array([[0.0, 0.0, 0.0], [8.0, 8.0, 0.0], [0.0, 8.0, 800.0]])
BLOB_STD = np.array([0.7, 0.7, 70.0])


def blobs(n: int, seed: int) -> tuple[list[dict[str, float]], list[int]]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    # every blob is represented in the first WARMUP vectors
    truth[:3] = [0, 1, 2]
    raw = BLOB_MEANS[truth] + rng.normal(0.0, 1.0, (n, 3)) * BLOB_STD
    # plain Python floats, as model_input() produces
    return [{f: float(v) for f, v in zip(FEATURES, row, strict=True)} for row in raw], truth.tolist()


TRAIN, TRAIN_TRUTH = blobs(600, seed=7)
HELD_OUT, HELD_OUT_TRUTH = blobs(100, seed=8)


@pytest.fixture(params=CLASSES, ids=lambda cls: cls.__name__)
def make(request: pytest.FixtureRequest) -> Callable[[], Segmenter]:
    return maker(request.param)


def trained(make: Callable[[], Segmenter], xs: list[dict[str, float]] = TRAIN) -> Segmenter:
    seg = make()
    for x in xs:
        seg.learn(x)
    return seg


def as_matrix(xs: list[dict[str, float]]) -> np.ndarray:
    return np.array([[x[f] for f in FEATURES] for x in xs])


def center_matrix(seg: Segmenter) -> tuple[list[int], np.ndarray]:
    centers = seg.centers()
    ids = sorted(centers)
    return ids, np.array([[centers[i][f] for f in FEATURES] for i in ids])


def population_scaling(xs: list[dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    m = as_matrix(xs)
    return m.mean(axis=0), m.std(axis=0)  # population (ddof=0) statistics


# --------------------------------------------------------------------------- warm-up


def test_before_warmup__not_ready_version_0_and_assign_many_raises(make: Callable[[], Segmenter]) -> None:
    seg = make()
    assert not seg.ready and seg.version == 0
    for x in TRAIN[: WARMUP - 1]:
        seg.learn(x)
    assert not seg.ready
    assert seg.version == 0
    with pytest.raises(RuntimeError, match="warming up"):
        seg.assign_many(TRAIN[:3])


def test_after_warmup__ready_with_version_at_least_1(make: Callable[[], Segmenter]) -> None:
    seg = make()
    for x in TRAIN[:WARMUP]:
        seg.learn(x)
    assert seg.ready
    assert seg.version >= 1
    assert len(seg.centers()) == 3
    assert len(seg.assign_many(TRAIN[:5])) == 5


def test_end_warmup_with_fewer_vectors_than_segments__does_nothing(
        make: Callable[[], Segmenter]) -> None:
    seg = trained(make, TRAIN[:2])
    assert seg.end_warmup() is False
    assert not seg.ready and seg.version == 0
    for x in TRAIN[2:WARMUP]:  # the usual warm-up still ends it
        seg.learn(x)
    assert seg.ready


def test_end_warmup_early__seeds_from_the_buffer_when_the_clusterer_can(
        make: Callable[[], Segmenter]) -> None:
    """The k-means family seeds k centres from any k vectors; density-based clusterers
    become ready only if the buffer holds dense clusters, else they keep learning."""
    seg = trained(make, TRAIN[:WARMUP // 2])
    ready = seg.end_warmup()
    assert ready is seg.ready
    if isinstance(seg, RiverKMeansSegmenter) or type(seg).__name__ == "StreamKMeansSegmenter":
        assert ready and len(seg.centers()) == 3
        pred = [a.segment_id for a in seg.assign_many(HELD_OUT)]
        assert adjusted_rand_index(HELD_OUT_TRUTH, pred) >= 0.95
    for x in TRAIN[WARMUP // 2:]:  # learning goes on either way
        seg.learn(x)
    assert seg.ready and seg.end_warmup() is True  # a ready one stays as it is


def test_version__never_decreases_while_learning(make: Callable[[], Segmenter]) -> None:
    seg = make()
    versions = []
    for x in TRAIN:
        seg.learn(x)
        versions.append(seg.version)
    assert versions == sorted(versions)
    assert versions[-1] >= 1


def test_assign_many_of_nothing__is_an_empty_list(make: Callable[[], Segmenter]) -> None:
    assert trained(make).assign_many([]) == []


# --------------------------------------------------------------------------- quality


def test_three_separated_blobs__assignments_agree_with_the_truth(make: Callable[[], Segmenter]) -> None:
    seg = trained(make)
    for xs, truth in ((TRAIN, TRAIN_TRUTH), (HELD_OUT, HELD_OUT_TRUTH)):
        pred = [a.segment_id for a in seg.assign_many(xs)]
        assert adjusted_rand_index(truth, pred) >= 0.95
        assert len(set(pred)) == 3


def test_three_separated_blobs__are_found_from_warmup_alone(make: Callable[[], Segmenter]) -> None:
    seg = trained(make, TRAIN[:WARMUP])
    pred = [a.segment_id for a in seg.assign_many(HELD_OUT)]
    assert adjusted_rand_index(HELD_OUT_TRUTH, pred) >= 0.95


def test_centres__are_in_standardized_units_near_the_blob_means(make: Callable[[], Segmenter]) -> None:
    seg = trained(make)
    mean, std = population_scaling(TRAIN)
    expected = (BLOB_MEANS - mean) / std
    _, got = center_matrix(seg)
    # every true blob mean (in z-scores) has a learned centre close by
    for e in expected:
        assert np.min(np.linalg.norm(got - e, axis=1)) < 0.3


# --------------------------------------------------------------------------- distances


def test_assignment__returns_the_nearest_centre_and_its_distance(make: Callable[[], Segmenter]) -> None:
    seg = trained(make)
    mean, std = population_scaling(TRAIN)
    ids, centers = center_matrix(seg)
    xs = TRAIN + HELD_OUT
    z = (as_matrix(xs) - mean) / std
    brute = np.linalg.norm(z[:, None, :] - centers[None, :, :], axis=2)
    got = seg.assign_many(xs)
    assert all(isinstance(a, Assignment) for a in got)
    for row, a in zip(brute, got, strict=True):
        assert a.distance >= 0.0
        assert a.segment_id in ids
        d_assigned = row[ids.index(a.segment_id)]
        assert d_assigned <= row.min() + 1e-9
        assert a.distance == pytest.approx(d_assigned, rel=1e-6, abs=1e-9)


def test_point_exactly_at_a_centre__is_assigned_to_it_at_distance_zero(
    make: Callable[[], Segmenter],
) -> None:
    seg = trained(make)
    mean, std = population_scaling(TRAIN)
    ids, centers = center_matrix(seg)
    at_centres = [dict(zip(FEATURES, (c * std + mean).tolist(), strict=True)) for c in centers]
    got = seg.assign_many(at_centres)
    assert [a.segment_id for a in got] == ids
    assert all(a.distance == pytest.approx(0.0, abs=1e-6) for a in got)


def test_assign_many__does_not_learn(make: Callable[[], Segmenter]) -> None:
    seg = trained(make)
    before = seg.centers(), seg.version
    seg.assign_many(HELD_OUT)
    assert (seg.centers(), seg.version) == before


def test_scaler_stats__are_the_population_mean_variance_and_count(make: Callable[[], Segmenter]) -> None:
    seg = trained(make)
    mean, var, n = seg.scaler_stats()
    m = as_matrix(TRAIN)
    assert n == len(TRAIN)
    assert [mean[f] for f in FEATURES] == pytest.approx(m.mean(0).tolist(), rel=1e-9)
    assert [var[f] for f in FEATURES] == pytest.approx(m.var(0).tolist(), rel=1e-9)


# --------------------------------------------------------------------------- snapshot / restore


def restore(seg: Segmenter, snap: dict[str, Any]) -> Segmenter:
    restorer = getattr(type(seg), "restore", None)
    # the protocol: a worker resumes warm from its snapshot, so every segmenter restores
    assert restorer is not None, f"{type(seg).__name__} has no restore()"
    return restorer(snap)  # type: ignore[no-any-return]


def json_round_trip(snap: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(snap))  # type: ignore[no-any-return]


def test_snapshot__is_json_serialisable_before_and_after_warmup(make: Callable[[], Segmenter]) -> None:
    seg = make()
    assert json_round_trip(seg.snapshot()) == seg.snapshot()
    for x in TRAIN[:10]:
        seg.learn(x)
    assert json_round_trip(seg.snapshot()) == seg.snapshot()
    for x in TRAIN[10:]:
        seg.learn(x)
    snap = seg.snapshot()
    assert isinstance(orjson.dumps(snap), bytes)
    assert json_round_trip(snap) == snap


def test_restore__assigns_the_same_segments_as_the_original(make: Callable[[], Segmenter]) -> None:
    seg = trained(make)
    again = restore(seg, json_round_trip(seg.snapshot()))
    assert again.ready and again.version == seg.version
    assert again.centers() == seg.centers()
    a, b = seg.assign_many(HELD_OUT), again.assign_many(HELD_OUT)
    assert [x.segment_id for x in a] == [x.segment_id for x in b]
    assert [x.distance for x in a] == pytest.approx([x.distance for x in b], rel=1e-12)


def test_restore__learning_continues_with_persisted_counters(make: Callable[[], Segmenter]) -> None:
    seg = trained(make)
    again = restore(seg, json_round_trip(seg.snapshot()))
    if hasattr(seg, "learned"):
        assert again.learned == seg.learned == len(TRAIN)  # type: ignore[attr-defined]
    before = again.centers()
    shifted = [{f: v + (3.0 if f == "recency" else 0.0) for f, v in x.items()} for x in HELD_OUT]
    for x in shifted:
        again.learn(x)
    assert again.ready
    assert again.version >= seg.version
    assert again.centers() != before, "centres must keep moving after restore"
    if hasattr(seg, "learned"):
        assert again.learned == len(TRAIN) + len(shifted)  # type: ignore[attr-defined]


def test_restore__then_learning_matches_the_original_learning_the_same_data(
    make: Callable[[], Segmenter],
) -> None:
    seg = trained(make)
    again = restore(seg, json_round_trip(seg.snapshot()))
    for x in HELD_OUT:
        seg.learn(x)
        again.learn(x)
    for i, c in seg.centers().items():
        assert again.centers()[i] == pytest.approx(c, rel=1e-9)
    assert [a.segment_id for a in again.assign_many(TRAIN)] == [
        a.segment_id for a in seg.assign_many(TRAIN)]


def test_restore__keeps_the_hyperparameters_of_the_snapshot() -> None:
    import random

    rng = random.Random(3)
    seg = RiverKMeansSegmenter(["a", "b"], n_segments=2, halflife=0.2, warmup=20, seed=9,
                               version_every=77)
    for i in range(40):
        seg.learn({"a": (i % 2) * 5 + rng.random(), "b": rng.random()})
    back = RiverKMeansSegmenter.restore(orjson.loads(orjson.dumps(seg.snapshot())))
    assert (back.kmeans.halflife, back.warmup, back.seed, back.version_every) == (0.2, 20, 9, 77)


def test_restore_of_kmeans_before_warmup__keeps_the_number_of_segments() -> None:
    seg = RiverKMeansSegmenter(FEATURES, n_segments=3, warmup=WARMUP, seed=1)
    for x in TRAIN[:10]:
        seg.learn(x)
    back = RiverKMeansSegmenter.restore(json_round_trip(seg.snapshot()))
    for x in TRAIN[10:WARMUP + 10]:
        back.learn(x)
    assert back.ready and len(back.centers()) == 3


# --------------------------------------------------------------------------- stream clusterers: the cache


@pytest.fixture(params=STREAM_CLASSES, ids=lambda cls: cls.__name__)
def make_stream(request: pytest.FixtureRequest) -> Callable[[], StreamSegmenter]:
    return maker(request.param)  # type: ignore[return-value]


def count_expensive_calls(seg: StreamSegmenter, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record ``seg.learned`` at every macro-cluster step; fail on any River predict_one."""
    macro_at: list[int] = []
    macro = seg._macro_centers

    def counted() -> np.ndarray:
        macro_at.append(seg.learned)
        return macro()

    def forbidden(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("River's predict_one reruns the macro step: never call it per event")

    monkeypatch.setattr(seg, "_macro_centers", counted)
    monkeypatch.setattr(seg.model, "predict_one", forbidden)
    return macro_at


def test_macro_step__runs_at_warmup_end_and_every_n_learns_never_per_event(
    make_stream: Callable[[], StreamSegmenter], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seg = make_stream()
    macro_at = count_expensive_calls(seg, monkeypatch)
    for x in TRAIN:
        seg.learn(x)
        if seg.ready:
            seg.assign_many([x])
    every_n = [n for n in range(WARMUP + 1, len(TRAIN) + 1) if n % REFRESH == 0]
    assert macro_at == [WARMUP, *every_n]


def test_refresh__on_request_recomputes_and_bumps_the_version_only_on_change(
    make_stream: Callable[[], StreamSegmenter], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seg = trained(make_stream)
    macro_at = count_expensive_calls(seg, monkeypatch)
    version, centers = seg.version, seg.centers()
    assert seg.refresh() is False, "nothing learned since the last refresh: same centres"
    assert (seg.version, seg.centers()) == (version, centers)
    shifted = [{**x, "frequency": x["frequency"] + 4.0} for x in HELD_OUT[: REFRESH - 1]]
    for x in shifted:
        seg.learn(x)
    assert (seg.version, seg.centers()) == (version, centers), "between refreshes the cache holds"
    assert seg.refresh() is True
    assert seg.version == version + 1
    assert seg.centers() != centers
    assert len(macro_at) == 2


def test_refresh__during_warmup_does_nothing(make_stream: Callable[[], StreamSegmenter]) -> None:
    seg = make_stream()
    for x in TRAIN[: WARMUP - 1]:
        seg.learn(x)
    assert seg.refresh() is False
    assert not seg.ready and seg.version == 0


def test_restore_mid_warmup__finishes_the_warmup_like_the_original(
    make_stream: Callable[[], StreamSegmenter],
) -> None:
    seg = trained(make_stream, TRAIN[: WARMUP // 2])
    again = restore(seg, json_round_trip(seg.snapshot()))
    assert not again.ready
    for x in TRAIN[WARMUP // 2 : 200]:
        seg.learn(x)
        again.learn(x)
    assert again.ready and again.version == seg.version
    assert again.centers() == seg.centers()


def test_restore__refuses_a_snapshot_of_another_clusterer() -> None:
    snap = json_round_trip(trained(maker(DBSTREAMSegmenter)).snapshot())
    with pytest.raises(ValueError, match="'dbstream' segmenter, not 'clustream'"):
        CluStreamSegmenter.restore(snap)
    assert type(factory.restore(snap)) is DBSTREAMSegmenter


# --------------------------------------------------------------------------- defaults on 17 features


def blobs_17(n: int, seed: int) -> tuple[list[dict[str, float]], list[int]]:
    """Four well-separated blobs over 17 features of mixed scales (like the model's inputs)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(0).normal(0.0, 1.0, (4, 17)) * 2.0
    scales = np.geomspace(0.1, 1000.0, 17)
    truth = rng.integers(0, 4, n)
    raw = (means[truth] + rng.normal(0.0, 0.35, (n, 17))) * scales
    names = [f"f{i:02d}" for i in range(17)]
    return [dict(zip(names, map(float, row), strict=True)) for row in raw], truth.tolist()


@pytest.mark.parametrize("kind", sorted(factory.SEGMENTERS))
def test_default_hyperparameters__recover_four_blobs_in_17_standardized_features(kind: str) -> None:
    xs, _ = blobs_17(1500, seed=3)
    names = list(xs[0])
    cadence = {} if kind == "kmeans" else {"refresh_every": 250}
    seg = factory.build(kind, names, n_segments=4, warmup=250, **cadence)
    for x in xs:
        seg.learn(x)
    held, held_truth = blobs_17(300, seed=4)
    pred = [a.segment_id for a in seg.assign_many(held)]
    assert len(seg.centers()) == 4
    assert adjusted_rand_index(held_truth, pred) >= 0.95


@pytest.mark.parametrize("cls", [cls for cls in STREAM_CLASSES if hasattr(cls, "set_centers")],
                         ids=lambda cls: cls.__name__)
def test_set_centers__continues_learning_from_the_global_centres(cls: type[StreamSegmenter]) -> None:
    seg = trained(maker(cls))
    version = seg.version
    given = {i: {f: v + 0.1 for f, v in c.items()} for i, c in seg.centers().items()}
    given[3] = {"recency": 2.0, "frequency": 2.0, "spend": 2.0}  # the global model may hold more
    seg.set_centers(given)  # type: ignore[attr-defined]
    assert seg.centers() == given and seg.version == version + 1
    assert restore(seg, json_round_trip(seg.snapshot())).centers() == given
    for x in HELD_OUT:  # two refreshes on the way
        seg.learn(x)
    moved = seg.centers()
    assert len(moved) == 4 and moved != given
    for i in range(3):  # learning went on from the given centres: each stays near its blob
        start = np.array([given[i][f] for f in FEATURES])
        assert np.linalg.norm(np.array([moved[i][f] for f in FEATURES]) - start) < 0.5


@pytest.mark.parametrize("p", [2, 1])
def test_learn_kmeans__moves_the_centres_rivers_learn_one_moves(p: int) -> None:
    """The lean nearest-centre search (p=2) and River's own (any other p) learn alike."""
    rng = np.random.default_rng(3)
    feats = [f"f{i}" for i in range(11)]
    river = cluster.KMeans(n_clusters=6, halflife=0.1, p=p, seed=1)
    for c in range(6):
        river.centers[c] = collections.defaultdict(float, zip(feats, map(float, rng.normal(size=11)),
                                                              strict=True))
    lean = copy.deepcopy(river)
    for row in rng.normal(size=(3000, 11)):
        x = dict(zip(feats, map(float, row), strict=True))
        river.learn_one(x)
        learn_kmeans(lean, x)
    for c in range(6):
        assert [lean.centers[c][f] for f in feats] == pytest.approx(
            [river.centers[c][f] for f in feats], rel=1e-12, abs=1e-12)
