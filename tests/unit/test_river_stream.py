"""What the stream clusterers change in River, and choosing a clusterer by settings.

The shared protocol suite (test_segmenters.py) runs every clusterer; this file
checks the pieces that replace parts of River (DenStream's radius, keys and
offline DBSCAN; CluStream's merge search) and the factory behind
``STREAMSEG_CLUSTERER``.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from pydantic import ValidationError
from river import cluster

from streamseg.engine import build_segmenter, restore_segmenter
from streamseg.errors import ConfigError
from streamseg.features.registry import MODEL_FEATURES
from streamseg.segmenting import factory
from streamseg.segmenting.river_denstream import (
    FixedDenStream,
    FixedMicroCluster,
    dbscan_macro_clusters,
)
from streamseg.segmenting.river_stream import VectorisedCluStream, heaviest
from streamseg.settings import Settings

pytestmark = pytest.mark.usefixtures("clean_env")  # no STREAMSEG_* from the shell


def points(n: int, dims: int, seed: int, offset: float = 0.0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [{f"f{i}": float(v) for i, v in enumerate(row)} for row in rng.normal(offset, 1.0, (n, dims))]


def micro_cluster(xs: list[dict[str, float]]) -> FixedMicroCluster:
    mc = FixedMicroCluster(x=xs[0], timestamp=0, decaying_factor=0.01)
    for x in xs[1:]:
        mc.insert(x, 0)
    return mc


def rms_radius(xs: list[dict[str, float]]) -> float:
    m = np.array([list(x.values()) for x in xs])
    return float(np.sqrt(((m - m.mean(0)) ** 2).sum(1).mean()))


# --------------------------------------------------------------------------- DenStream


@pytest.mark.parametrize("offset", [0.0, 25.0, -1000.0])
def test_denstream_radius__is_the_rms_distance_to_the_centre_wherever_the_data_sit(offset: float) -> None:
    xs = points(50, 17, seed=1, offset=offset)
    assert micro_cluster(xs).calc_radius(0) == pytest.approx(rms_radius(xs), rel=1e-6)


def test_denstream_radius_with__equals_the_radius_after_inserting() -> None:
    xs = points(30, 5, seed=2, offset=7.0)
    mc = micro_cluster(xs[:-1])
    would_be = mc.radius_with(xs[-1])
    mc.insert(xs[-1], 0)
    assert would_be == pytest.approx(mc.calc_radius(0), rel=1e-9)
    assert would_be == pytest.approx(rms_radius(xs), rel=1e-6)


def test_denstream__a_far_event_starts_an_outlier_micro_cluster_instead_of_being_absorbed() -> None:
    ds = FixedDenStream(decaying_factor=0.01, beta=0.5, mu=3, epsilon=1.0, n_samples_init=40)
    for x in points(40, 3, seed=3, offset=50.0):  # one dense cloud far from the origin
        ds.learn_one(x)
    assert ds.initialized and len(ds.p_micro_clusters) >= 1
    dense = {k: mc.N for k, mc in ds.p_micro_clusters.items()}
    ds.learn_one({"f0": 60.0, "f1": 60.0, "f2": 60.0})
    assert {k: mc.N for k, mc in ds.p_micro_clusters.items()} == dense
    assert [mc.N for mc in ds.o_micro_clusters.values()] == [1]


def test_denstream__a_promoted_micro_cluster_never_overwrites_a_live_one() -> None:
    ds = FixedDenStream(decaying_factor=0.01, beta=0.5, mu=3, epsilon=1.0, n_samples_init=2)
    ds.initialized = True
    far = {"f0": 100.0}
    ds.p_micro_clusters = {0: micro_cluster([far] * 5), 2: micro_cluster([{"f0": 200.0}] * 5)}
    ds.next_key = 3  # p-micro-cluster 1 was pruned: River would key the next one len() == 2
    for _ in range(3):  # an outlier micro-cluster grows past mu * beta = 1.5
        ds.learn_one({"f0": 0.0})
    assert sorted(ds.p_micro_clusters) == [0, 2, 4]
    assert ds.p_micro_clusters[2].center == {"f0": 200.0}


def test_dbscan_macro_clusters__links_only_dense_overlapping_micro_clusters() -> None:
    centers = np.array([[0.0], [0.3], [0.6], [0.9], [5.0], [5.3]])
    radii = np.full(6, 0.2)
    weights = np.array([10.0, 10.0, 10.0, 1.0, 10.0, 10.0])  # the 4th is not a core
    labels = dbscan_macro_clusters(centers, radii, weights, mu=2.0, epsilon=0.5)
    assert labels.tolist() == [0, 0, 0, 1, 2, 2]
    apart = dbscan_macro_clusters(centers, np.full(6, 0.1), weights, mu=2.0, epsilon=0.5)
    assert len(set(apart.tolist())) == 6, "radii 0.1 apart by 0.3 do not overlap"


def test_heaviest__drops_small_clusters_and_caps_the_count_heaviest_first() -> None:
    centers = np.arange(5.0)[:, None]
    weights = np.array([5.0, 40.0, 1.0, 30.0, 24.0])
    assert heaviest(centers, weights, min_share=0.02, cap=3)[:, 0].tolist() == [1.0, 3.0, 4.0]
    assert heaviest(centers, weights, min_share=0.1, cap=10)[:, 0].tolist() == [1.0, 3.0, 4.0]
    assert heaviest(centers[:0], weights[:0], min_share=0.1, cap=3).shape == (0, 1)


# --------------------------------------------------------------------------- CluStream


def test_vectorised_clustream__keeps_the_same_micro_clusters_as_river() -> None:
    params = {"max_micro_clusters": 12, "micro_cluster_r_factor": 2, "time_window": 50,
              "time_gap": 2**62}
    ours, river = VectorisedCluStream(**params), cluster.CluStream(**params)
    merges = 0
    original = ours._maintain_micro_clusters

    def counted(x: dict[str, float], w: float) -> None:
        nonlocal merges
        merges += 1
        original(x, w)

    ours._maintain_micro_clusters = counted  # type: ignore[method-assign]
    for x in points(400, 17, seed=4):
        ours.learn_one(x)
        river.learn_one(x)
    assert merges > 100, "the stream must exercise the replaced merge path"
    assert list(ours.micro_clusters) == list(river.micro_clusters)
    for k, mc in river.micro_clusters.items():
        assert ours.micro_clusters[k].weight == mc.weight
        assert ours.micro_clusters[k].center == pytest.approx(mc.center, rel=1e-12)


# --------------------------------------------------------------------------- choosing by settings


@pytest.mark.parametrize("kind", sorted(factory.SEGMENTERS))
def test_settings__choose_the_clusterer_with_the_model_settings(kind: str) -> None:
    s = Settings(clusterer=kind, n_segments=5, model_warmup=123, seed=7, model_refresh_every=77)
    seg = build_segmenter(s)
    assert type(seg) is factory.SEGMENTERS[kind]
    params = seg.snapshot()["params"]
    assert (params["warmup"], params["seed"]) == (123, 7)
    assert params.get("refresh_every", 77) == 77
    assert seg.snapshot()["features"] == list(MODEL_FEATURES)


def test_settings__clusterer_and_its_params_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMSEG_CLUSTERER", "dbstream")
    monkeypatch.setenv("STREAMSEG_CLUSTERER_PARAMS", '{"clustering_threshold": 1.5, "max_segments": 9}')
    seg = build_segmenter(Settings())
    params = seg.snapshot()["params"]
    assert (params["clustering_threshold"], params["max_segments"]) == (1.5, 9)


def test_settings__refuse_an_unknown_clusterer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_CLUSTERER", "birch")
    with pytest.raises(ValidationError, match="clusterer"):
        Settings()


@pytest.mark.parametrize("params", ['{"epsilon": "wide"}', "[1, 2]", '{"a": true}', "{nope"])
def test_settings__refuse_clusterer_params_that_are_not_an_object_of_numbers(params: str) -> None:
    with pytest.raises(ValidationError, match="must be a JSON object of numbers"):
        Settings(clusterer_params=params)


def test_settings__with_clusterer_params_stay_hashable_and_canonical() -> None:
    a = Settings(clusterer_params='{"mu": 10, "epsilon": 1.1}')
    b = Settings(clusterer_params={"epsilon": 1.1, "mu": 10})
    assert a == b and hash(a) == hash(b)
    assert a.clusterer_kwargs == {"epsilon": 1.1, "mu": 10}


def test_factory__names_the_parameters_a_clusterer_takes_when_given_a_wrong_one() -> None:
    with pytest.raises(ConfigError, match=r"\['epsilon'\] for clusterer 'dbstream'.*clustering_threshold"):
        build_segmenter(Settings(clusterer="dbstream", clusterer_params='{"epsilon": 1.0}'))
    with pytest.raises(ConfigError, match="unknown clusterer 'birch'"):
        factory.build("birch", ["a"])


def test_factory__restore_refuses_a_snapshot_of_an_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="unknown clusterer 'birch'"):
        factory.restore({"kind": "birch"})


def test_restore_segmenter__brings_back_the_configured_clusterer_and_refuses_another() -> None:
    s = Settings(clusterer="clustream", model_warmup=60)
    seg = build_segmenter(s)
    for x in points(80, len(MODEL_FEATURES), seed=5):
        seg.learn(dict(zip(MODEL_FEATURES, x.values(), strict=True)))
    snap = orjson.loads(orjson.dumps(seg.snapshot()))
    assert restore_segmenter(s, snap).centers() == seg.centers()
    with pytest.raises(ValueError, match="snapshot is of clusterer 'clustream', settings ask for 'kmeans'"):
        restore_segmenter(Settings(clusterer="kmeans"), snap)
