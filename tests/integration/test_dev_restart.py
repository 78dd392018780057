"""`streamseg dev` keeps its stack when the worker dies: the worker comes back, the view says so."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from tests.support import wait_until_sync

from .test_dev import alive, children_of, drain

pytestmark = pytest.mark.integration

PROCESSED = re.compile(r"processed ([\d,]+) events")


def read_until(stream: IO[str], lines: list[str], done: object, timeout: float) -> str:
    """Lines of ``stream`` into ``lines`` until one satisfies ``done``; that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if done(line):  # type: ignore[operator]
            return line
    raise AssertionError(f"no such line within {timeout:.0f}s; the last ones:\n{''.join(lines[-40:])}")


def processed(line: str) -> int:
    found = PROCESSED.search(line)
    return int(found.group(1).replace(",", "")) if found else 0


def test_dev__restarts_a_killed_worker_and_keeps_the_broker(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "dev", "--customers", "300", "--rate", "300", "--days", "90",
         "--no-view", "--workdir", str(tmp_path), "--broker", "tansu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    children: set[int] = set()
    try:
        assert proc.stdout is not None
        exports = read_until(proc.stdout, lines, lambda ln: "export STREAMSEG_KAFKA_BOOTSTRAP=" in ln, 120)
        assert "STREAMSEG_REDIS_URL=redis://127.0.0.1:" in exports and "inspect, forget" in exports
        read_until(proc.stdout, lines, lambda ln: processed(ln) > 0, 120)
        children |= children_of(proc.pid)
        workers = [c for c in children if alive(c) and b"worker" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 1, [Path(f"/proc/{c}/cmdline").read_bytes() for c in children]
        others = {c for c in children if alive(c)} - set(workers)  # broker, Valkey, generator

        os.kill(workers[0], signal.SIGKILL)  # the worker process this test's dev started
        read_until(proc.stdout, lines, lambda ln: "worker exited with code -9" in ln, 60)
        read_until(proc.stdout, lines, lambda ln: "worker started again (restart 1)" in ln, 60)
        # the new worker counts from zero: a count that grows again is the new worker's
        read_until(proc.stdout, lines, lambda ln: processed(ln) > 0, 120)
        assert any("worker restarts: 1 (last exit code -9)" in ln for ln in lines[-60:]), \
            "".join(lines[-40:])
        assert proc.poll() is None  # dev itself runs on
        assert all(alive(c) for c in others), "the broker, Valkey and generator live on"

        children |= children_of(proc.pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)
        assert "stopped." in drain(proc.stdout)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until_sync(lambda: not any(alive(c) for c in children), 30,
                    lambda: f"every child to be gone; alive: {[c for c in children if alive(c)]}")
