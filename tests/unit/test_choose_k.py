"""Choosing k (STREAMSEG_N_SEGMENTS=auto): the scores, the rule's clear-and-lasting evidence and
its hysteresis, and the leader's change of k as a model version with lifecycle events.

Synthetic blobs (numpy, fixed seeds) stand in for customers: their number is known.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from streamseg.drift import DriftConfig, DriftMonitor
from streamseg.features.registry import MODEL_FEATURES
from streamseg.leader.leader import Leader
from streamseg.metrics import Metrics
from streamseg.publish.records import CatalogEntry
from streamseg.segmenting.assign import Assigner
from streamseg.segmenting.choose_k import KChooser, KRule, KScore, evaluate
from streamseg.segmenting.model import SegmentModel
from streamseg.settings import Settings

RULE = KRule(k_min=2, k_max=7, stability=0.75, tolerance=0.05, hysteresis=0.1, patience=3)


def blobs(n_blobs: int, *, per_blob: int = 150, dims: int = 5, spread: float = 6.0,
          seed: int = 0) -> np.ndarray:
    """``n_blobs`` round groups of points, ``spread`` standard deviations apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (n_blobs, dims))
    return np.vstack([c + rng.normal(0.0, 1.0, (per_blob, dims)) for c in centres])


def scores(*rows: tuple[int, float, float]) -> list[KScore]:
    return [KScore(k, sil, stab) for k, sil, stab in rows]


# -- settings -------------------------------------------------------------------------------
def test_n_segments__takes_auto_or_an_integer_and_auto_starts_at_the_minimum() -> None:
    assert Settings(n_segments="AUTO").segments_auto
    auto = Settings(n_segments="auto", n_segments_min=4)
    assert (auto.n_segments, auto.start_segments) == ("auto", 4)
    fixed = Settings(n_segments="7")
    assert (fixed.n_segments, fixed.start_segments, fixed.segments_auto) == (7, 7, False)


@pytest.mark.parametrize("changes", [{"n_segments": "1"}, {"n_segments": "many"},
                                     {"n_segments": "auto", "n_segments_min": 6, "n_segments_max": 4},
                                     {"n_segments": "auto", "clusterer": "dbstream"}])
def test_n_segments__refuses_what_cannot_be_chosen(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="STREAMSEG_N_SEGMENTS"):
        Settings(**changes)  # type: ignore[arg-type]


# -- the scores -------------------------------------------------------------------------------
@pytest.mark.parametrize("n_blobs", [3, 5])
def test_evaluate__prefers_the_number_of_blobs(n_blobs: int) -> None:
    found = evaluate(blobs(n_blobs, seed=n_blobs), RULE.ks, seed=1)
    assert [s.k for s in found] == RULE.ks  # every k tried is scored
    assert RULE.preferred(found) == n_blobs
    by_k = {s.k: s for s in found}
    assert by_k[n_blobs].stability > 0.95 and by_k[n_blobs + 1].stability < 0.75
    assert by_k[n_blobs].centers.shape == (n_blobs, 5)


def test_evaluate__leaves_out_ks_the_sample_is_too_small_for() -> None:
    found = evaluate(blobs(2, per_blob=20), RULE.ks, seed=1)  # 40 rows: at most 4 segments of 10
    assert [s.k for s in found] == [2, 3, 4]


# -- the rule ----------------------------------------------------------------------------------
def test_rule__one_arguing_refit_changes_nothing_but_patience_consecutive_ones_do() -> None:
    chooser = KChooser(RULE)
    wants_5 = scores((4, 0.40, 0.50), (5, 0.42, 0.95), (6, 0.30, 0.40))
    content = scores((4, 0.40, 0.90), (5, 0.38, 0.60), (6, 0.30, 0.40))
    assert [chooser.observe(4, s) for s in (wants_5, wants_5, content, wants_5, wants_5)] == [4] * 5
    assert chooser.last is not None and chooser.last.evidence == 2
    assert chooser.observe(4, wants_5) == 5  # the third consecutive refit
    assert chooser.last is not None and (chooser.last.k, chooser.last.previous_k) == (5, 4)
    assert chooser.last.evidence == 0 and [r.k for r in chooser.last.scores] == [4, 5, 6]


def test_rule__changes_to_the_k_the_arguing_refits_preferred_most() -> None:
    chooser = KChooser(RULE)
    prefer = {k: scores((3, 0.30, 0.40), (k, 0.30, 0.95)) for k in (5, 6)}
    assert [chooser.observe(3, prefer[k]) for k in (6, 5, 6)] == [3, 3, 6]


def test_rule__keeps_the_current_k_within_the_hysteresis_band() -> None:
    # 6 is eligible and the largest, but only 0.05 above the threshold: not clearly stable
    larger = scores((5, 0.40, 0.90), (6, 0.40, 0.80))
    assert RULE.preferred(larger) == 6 and not RULE.argues(5, larger)
    # 5 slipped under the threshold, but not by the hysteresis: 4 is preferred, 5 stays
    slipped = scores((4, 0.40, 0.95), (5, 0.40, 0.70))
    assert RULE.preferred(slipped) == 4 and not RULE.argues(5, slipped)
    failed = scores((4, 0.40, 0.95), (5, 0.40, 0.60))
    assert RULE.argues(5, failed)
    worse_separated = scores((4, 0.50, 0.95), (5, 0.39, 0.90))  # 0.11 below the best: > 2x 0.05
    assert RULE.argues(5, worse_separated)
    assert not RULE.argues(5, scores((4, 0.40, 0.50), (5, 0.40, 0.60)))  # nothing eligible: stay


def test_rule__does_not_flap_on_a_stationary_sample() -> None:
    """Repeated refits on the same population (new random resamples each time) keep k."""
    z = blobs(4, seed=11)
    chooser = KChooser(RULE)
    chosen = [chooser.observe(4, evaluate(z, RULE.ks, seed=seed)) for seed in range(8)]
    assert chosen == [4] * 8
    start_low = KChooser(RULE)
    path = []
    k = 2
    for seed in range(8):
        k = start_low.observe(k, evaluate(z, RULE.ks, seed=seed))
        path.append(k)
    assert path == [2, 2, 4, 4, 4, 4, 4, 4]  # clear and lasting after 3 refits, then stays


# -- the leader: a change of k is a model version with lifecycle events ------------------------
class BlobSample:
    """A customer sample of model inputs already in the model's scale (mean 0, variance 1)."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z

    def __len__(self) -> int:
        return len(self.z)

    @property
    def n_train(self) -> int:  # every row is an active customer's
        return len(self.z)

    async def evaluate(self, model: SegmentModel, ks: list[int], seed: int) -> list[KScore]:
        return evaluate(self.z, ks, seed=seed)

    async def fit(self, model: SegmentModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return model.refine(self.z, seed=seed)

    async def release(self) -> None:
        """Nothing held."""


def leader_with(model: SegmentModel, **changes: object) -> Leader:
    cfg = Settings(n_segments="auto", n_segments_min=2, n_segments_max=7, n_segments_patience=2,
                   **changes)  # type: ignore[arg-type]
    drift = DriftMonitor(DriftConfig.from_settings(cfg), MODEL_FEATURES)
    assigner = Assigner(cfg.segment_margin, Metrics(CollectorRegistry()), drift, lambda m: None)
    assigner.adopt(model)
    return Leader(cfg, None, None, None, assigner, None)  # type: ignore[arg-type]


def model_on(z: np.ndarray, k: int) -> SegmentModel:
    d = z.shape[1]
    start = z[np.random.default_rng(0).choice(len(z), k, replace=False)]
    first = SegmentModel.first([f"f{i}" for i in range(d)], np.zeros(d), np.ones(d), start,
                               np.ones(k))
    centers, weights = first.refine(z)
    return SegmentModel.first(first.features, first.mean, first.var, centers, weights)


async def refits(leader: Leader, sample: BlobSample, n: int) -> list[tuple[SegmentModel, list]]:
    out = []
    for _ in range(n):
        proposal = await leader.refine(sample)  # type: ignore[arg-type]
        if proposal is not None:
            leader.assigner.adopt(proposal[0])
            out.append(proposal)
    return out


def test_leader__a_new_group_is_born_after_lasting_evidence_and_the_catalog_says_why() -> None:
    z = blobs(4, seed=3)
    leader = leader_with(model_on(z, 3))
    sample = BlobSample(z)
    changed = [(m, ev) for m, ev in asyncio.run(refits(leader, sample, 2)) if len(m.ids) != 3]
    assert len(changed) == 1, "k changes at the second (patience) refit"
    model, events = changed[0]
    assert len(model.ids) == 4 and model.version >= 2
    assert [e.status for e in events] in (["born"], ["split"])
    assert events[0].segment_id == 3 and events[0].segment_id in model.ids  # a new, never reused id
    entries = leader.catalog(model, events)
    sel = entries[0].k_selection
    assert sel is not None and (sel.k, sel.previous_k) == (4, 3)
    assert [s.k for s in sel.scores] == list(range(2, 8))
    assert {s.k for s in sel.scores if s.eligible} >= {4}
    assert CatalogEntry.model_validate_json(entries[0].to_bytes()) == entries[0]  # segments.v1 round trip
    asyncio.run(refits(leader, sample, 2))
    assert leader.assigner.model is not None and len(leader.assigner.model.ids) == 4  # and stays


def test_leader__a_change_of_k_overtaken_by_a_newer_version_is_made_at_the_next_refit() -> None:
    z = blobs(4, seed=3)
    leader = leader_with(model_on(z, 3))
    sample = BlobSample(z)
    assert asyncio.run(refits(leader, sample, 1)) == []  # 1 of 2 refits argued for 4
    newer = model_on(z, 3)
    newer.version = 7  # a merge lands while the refit that would change k runs

    class Overtaken(BlobSample):
        async def fit(self, model: SegmentModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
            leader.assigner.adopt(newer)
            return await super().fit(model, seed)

    assert asyncio.run(leader.refine(Overtaken(z))) is None  # type: ignore[arg-type]
    proposals = asyncio.run(refits(leader, sample, 1))  # one more arguing refit, not two
    assert [len(m.ids) for m, _ in proposals] == [4]


def test_leader__segments_too_many_are_merged_or_retired() -> None:
    z = blobs(3, seed=5)
    leader = leader_with(model_on(z, 5))
    proposals = asyncio.run(refits(leader, BlobSample(z), 3))
    final = leader.assigner.model
    assert final is not None and len(final.ids) == 3
    ended = [e for _, evs in proposals for e in evs if e.status in ("merged", "retired")]
    assert len(ended) == 2 and {e.segment_id for e in ended}.isdisjoint(final.ids)
    assert all(final.retired[e.segment_id] == e.status for e in ended)


def test_leader__with_a_fixed_k_scores_nothing_and_the_catalog_has_no_selection() -> None:
    z = blobs(4, seed=3)
    model = model_on(z, 3)
    cfg = Settings(n_segments=3)
    drift = DriftMonitor(DriftConfig.from_settings(cfg), MODEL_FEATURES)
    assigner = Assigner(cfg.segment_margin, Metrics(CollectorRegistry()), drift, lambda m: None)
    assigner.adopt(model)
    leader = Leader(cfg, None, None, None, assigner, None)  # type: ignore[arg-type]
    assert leader.k_chooser is None
    asyncio.run(refits(leader, BlobSample(z), 3))
    assert assigner.model is not None and len(assigner.model.ids) == 3
    assert leader.catalog(assigner.model, [])[0].k_selection is None
