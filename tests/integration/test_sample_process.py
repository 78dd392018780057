"""The leader's refresh sample in a child process (real Valkey): same answers as in threads,
and a child that dies costs one refresh, not the worker's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from streamseg.engine import Engine, InMessage, build_segmenter
from streamseg.generate import assign_personas, simulate
from streamseg.leader.leader import CustomerSample
from streamseg.metrics import Metrics
from streamseg.segmenting.offload import ChildSample, LocalSample, SampleLost, SampleProcess
from streamseg.settings import Settings
from tests.support import Recorder, wait_until_sync

from .engine_support import store_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01


async def seeded_engine(settings: Settings) -> Engine:
    """An in-process engine (its own leader) that has segmented 200 simulated customers."""
    cfg = settings.model_copy(update={"n_segments": 4, "model_warmup": 100, "model_sync_events": 50,
                                      "clock": "event"})
    truth = assign_personas(200, seed=5)
    engine = Engine(cfg, store_for(cfg), build_segmenter(cfg), Recorder(), Metrics(CollectorRegistry()))
    events = [InMessage(cfg.topic(ev.topic_role), 0, i, ev.customer_id.encode(), orjson.dumps(ev.payload))
              for i, ev in enumerate(simulate(truth, days=40, end_ms=T0, seed=5))]
    for i in range(0, len(events), 500):
        await engine.process(events[i : i + 500])
    assert engine.assigner.model is not None
    return engine


@contextlib.asynccontextmanager
async def both_samples(settings: Settings) -> AsyncIterator[tuple[Engine, SampleProcess,
                                                                   CustomerSample, CustomerSample]]:
    """A seeded engine, a sample process, and the same customers sampled in threads and in it."""
    engine = await seeded_engine(settings)
    sampler = SampleProcess(engine.settings.redis_url, engine.settings.key_prefix)
    try:
        local = await engine.leader.sample_customers()
        engine.leader.sampler = sampler
        yield engine, sampler, local, await engine.leader.sample_customers()
    finally:
        sampler.close()
        await engine.store.close()


async def test_child_sample__same_refit_and_profiles_as_the_threads(settings: Settings) -> None:
    async with both_samples(settings) as (engine, sampler, local, child):
        assert isinstance(local, LocalSample) and isinstance(child, ChildSample)
        assert len(child) == len(local) == 200
        model = engine.assigner.model
        assert model is not None
        (lc, lw), (cc, cw) = await local.fit(model, 7), await child.fit(model, 7)
        np.testing.assert_array_equal(cc, lc)
        np.testing.assert_array_equal(cw, lw)
        names = {sid: f"s{sid}" for sid in model.ids}
        sizes = await engine.store.segment_sizes()
        lp = await local.profiles(names, sizes, model.version)
        cp = await child.profiles(names, sizes, model.version)
        assert set(cp) == set(model.ids) and any(p.size for p in cp.values())
        assert {k: p.model_dump() for k, p in cp.items()} == {k: p.model_dump() for k, p in lp.items()}
        previous = engine.leader.previous  # the version the last local merge replaced
        assert previous is not None and previous.version < model.version
        lv, cv = await local.validate(model, previous, 7), await child.validate(model, previous, 7)
        assert cv == lv and cv.overall is not None and set(cv.members) == set(model.ids)
        # the engine's own refresh runs through the child: profiles and validation for every
        # live segment, stability against the version before
        entries = await engine.leader.refresh_profiles()
        assert {e.segment_id for e in entries} >= set(model.ids)
        live = [e for e in entries if e.status == "active"]
        assert all(e.profile is not None for e in live)
        assert all(e.validation is not None and e.validation.model_version == model.version
                   and e.validation.previous_version == previous.version for e in live)
        assert any(e.validation.stability is not None for e in live if e.validation)
        assert sampler.pid() is not None and sampler.pid() != os.getpid()
        await child.release()  # the refresh is over: the child frees that sample
        with pytest.raises(SampleLost, match="no longer held"):
            await child.fit(model, 7)


async def test_child_sample__scores_every_k_in_the_child_as_the_threads_do(settings: Settings) -> None:
    """STREAMSEG_N_SEGMENTS=auto scores k in the sample process: same scores as in a thread."""
    async with both_samples(settings) as (engine, sampler, local, child):
        model = engine.assigner.model
        assert model is not None and isinstance(child, ChildSample)
        ks = [2, 3, 4, 5]
        in_child, in_thread = await child.evaluate(model, ks, 7), await local.evaluate(model, ks, 7)
        assert [s.k for s in in_child] == ks and in_child == in_thread  # k, silhouette, stability
        assert all(s.centers.shape == (s.k, len(model.features)) for s in in_child)
        assert sampler.pid() is not None and sampler.pid() != os.getpid()
        await child.release()


async def test_child_sample__a_dead_child_fails_that_call_and_the_next_sample_starts_a_new_one(
    settings: Settings,
) -> None:
    engine = await seeded_engine(settings)
    sampler = SampleProcess(engine.settings.redis_url, engine.settings.key_prefix)
    engine.leader.sampler = sampler
    try:
        sample = await engine.leader.sample_customers()
        first = sampler.pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(SampleLost):
            await sample.fit(engine.assigner.model, 1)  # type: ignore[arg-type]
        again = await engine.leader.sample_customers()  # a fresh child, a fresh sample
        assert len(again) == 200 and sampler.pid() not in (None, first)
        with pytest.raises(SampleLost, match="no longer held"):  # the old handle's sample died with it
            await sample.fit(engine.assigner.model, 1)  # type: ignore[arg-type]
        centers, weights = await again.fit(engine.assigner.model, 1)  # type: ignore[arg-type]
        assert len(centers) == len(weights) == len(engine.assigner.model.ids)  # type: ignore[union-attr]
    finally:
        sampler.close()
        await engine.store.close()
    assert sampler.pid() is None


async def test_child_sample__runs_nicer_than_the_worker_by_sample_nice(settings: Settings) -> None:
    """Its bursts of model work yield to the batch loop on busy cores."""
    engine = await seeded_engine(settings)
    sampler = SampleProcess(engine.settings.redis_url, engine.settings.key_prefix,
                            nice=Settings().sample_nice)
    engine.leader.sampler = sampler
    try:
        sample = await engine.leader.sample_customers()
        assert len(sample) == 200
        child = sampler.pid()
        assert child is not None
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, child) == min(19, mine + 10)
    finally:
        sampler.close()
        await engine.store.close()


PARENT = """
import asyncio, os, sys, time
from streamseg.segmenting.offload import SampleProcess

async def main():
    sampler = SampleProcess(sys.argv[1], "x")
    print(await sampler.call(os.getpid), flush=True)
    time.sleep(600)

asyncio.run(main())
"""


def test_child__exits_when_the_worker_is_killed(settings: Settings) -> None:
    """kill -9 runs no shutdown: the child must notice on its own, not linger as an orphan."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, settings.redis_url],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert child != parent.pid and alive(child)
        parent.kill()
        parent.wait(10)
        wait_until_sync(lambda: not alive(child), 10, "the sample process to exit with its killed worker")
    finally:
        parent.kill()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
