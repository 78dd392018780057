"""`streamseg dev`: everything starts, segments appear, Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO

import pytest
import redis

from streamseg.devstack.dev import against_truth
from streamseg.features.keys import Keys
from streamseg.segmenting.naming import ARCHETYPES
from streamseg.settings import Settings
from tests.support import alive, wait_until_sync

pytestmark = pytest.mark.integration


SEGMENT_NAMES = (*ARCHETYPES, "Segment ")  # archetype names or the fallback "Segment N (...)"


def drain(stream: IO[str], grace: float = 5.0) -> str:
    """What is left on a pipe of an exited process, without waiting on other holders of it."""
    os.set_blocking(stream.fileno(), False)
    chunks: list[str] = []
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            time.sleep(0.05)
            continue
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    return "".join(chunks)


def children_of(pid: int) -> set[int]:
    """Every process whose parent chain leads to ``pid`` (or that recorded it as parent)."""
    kids: set[int] = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == pid:
            kids.add(int(status.parent.name))
    return kids


@pytest.mark.parametrize("broker", ["kafka", "tansu"])
def test_dev__shows_segments_and_ctrl_c_stops_every_child(tmp_path: Path, broker: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "dev", "--customers", "300", "--rate", "3000", "--days", "30",
         "--no-view", "--workdir", str(tmp_path), "--broker", broker],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            children |= children_of(proc.pid)
            if any(name in line for name in SEGMENT_NAMES):  # a segment is shown
                break
        assert any("customers" in line for line in lines), "".join(lines[-40:])
        said = "Apache Kafka" if broker == "kafka" else "Tansu"
        assert any(line.startswith(f"broker: {said}") for line in lines), "".join(lines[:10])
        assert any(f"broker: {said}" in line and "events/s" in line for line in lines)
        assert any("ARI vs planted personas" in line for line in lines)
        assert any(line.startswith("explorer: http://127.0.0.1:") and "/ui/#token=" in line
                   for line in lines), "".join(lines[:10])
        names = {c: Path(f"/proc/{c}/cmdline").read_bytes() for c in children if alive(c)}
        assert len(children) >= 4, names  # broker, valkey, worker, generator (if still running)
        proc.send_signal(signal.SIGINT)
        # each child gets SIGTERM then up to 15 s; on a loaded machine shutdown takes a while
        proc.wait(timeout=180)
        out = drain(proc.stdout)  # not communicate(): that also waits for any leaked holder
        assert "stopped." in out, out[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until_sync(lambda: not any(alive(c) for c in children), 0.5,
                    lambda: f"every child to be gone; alive: {[c for c in children if alive(c)]}")


def test_the_view_reads_each_planted_customers_segment_and_risk_band(settings: Settings) -> None:
    """What the view scores against the truth, from a real Valkey: the ARI over customers
    with a segment, and the planted personas of those in the highest churn-risk band."""
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.hset(keys.state("a"), mapping={"seg": "1", "val_band": "high"})
        client.hset(keys.state("b"), mapping={"seg": "1", "val_band": "high"})
        client.hset(keys.state("c"), mapping={"seg": "2", "val_band": "low"})
        client.hset(keys.state("d"), mapping={"seg": "2"})  # no value model yet
        truth = {"a": "lapsing", "b": "lapsing", "c": "bargain_hunter", "d": "bargain_hunter",
                 "e": "window_shopper"}  # e: never seen
        (ari, assigned), high = against_truth(settings, truth)
    finally:
        client.close()
    assert (ari, assigned) == (1.0, 4)
    assert high == Counter({"lapsing": 2})
