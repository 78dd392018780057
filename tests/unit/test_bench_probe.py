"""The bench's memory probe counts a process together with the processes it started."""

from __future__ import annotations

import os
import subprocess
import sys

from streamseg.bench.probe import descendants, rss_mb
from tests.support import wait_until_sync

HOLDER = "import sys, time; x = bytearray(80 << 20); x[::4096] = b'1' * len(x[::4096]); " \
         "print('ready', flush=True); time.sleep(60)"


def test_rss_mb__includes_the_memory_of_child_processes() -> None:
    alone = rss_mb(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert child.pid in descendants(os.getpid())
        assert rss_mb(os.getpid()) - alone >= 75  # the child's 80 MiB, touched page by page
    finally:
        child.kill()
        child.wait()
    wait_until_sync(lambda: child.pid not in descendants(os.getpid()), 5, "the killed child to be reaped")


def test_rss_mb__of_a_process_that_is_gone_is_zero() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert rss_mb(gone.pid) == 0.0
