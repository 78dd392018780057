"""A supervised child comes back with doubling backoff; a long healthy run starts it over."""

from __future__ import annotations

import sys
from pathlib import Path

from streamseg.devstack.processes import ManagedProcess
from streamseg.devstack.supervise import Supervised


def dying(tmp_path: Path, clock: list[float]) -> Supervised:
    """A process that exits with code 3 at once, on a clock the test moves."""
    proc = ManagedProcess("job", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "job.log")
    return Supervised(proc, first_delay=1.0, max_delay=4.0, healthy_after=60.0,
                      clock=lambda: clock[0])


def die_and_restart(job: Supervised, clock: list[float]) -> float:
    """Let the process die, then move the clock to its restart; the delay it waited."""
    assert job.process.proc is not None
    job.process.proc.wait(10)
    said = job.poll()
    assert said is not None and said.startswith("job exited with code 3; starting it again in ")
    delay = float(said.split(" in ")[1].split("s")[0])
    clock[0] += delay - 0.5
    assert job.poll() is None  # not yet
    clock[0] += 0.5
    assert job.poll() == f"job started again (restart {job.restarts})"
    return delay


def test_backoff__doubles_up_to_the_cap_and_a_healthy_run_resets_it(tmp_path: Path) -> None:
    clock = [0.0]
    job = dying(tmp_path, clock).start()
    try:
        assert [die_and_restart(job, clock) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
        assert job.restarts == 4 and job.status() == "job restarts: 4 (last exit code 3)"
        clock[0] += 60.0  # as if the last run lasted a minute
        assert die_and_restart(job, clock) == 1.0
    finally:
        job.process.stop()
    assert (tmp_path / "job.log").exists()


def test_status__is_empty_while_the_process_never_died(tmp_path: Path) -> None:
    job = Supervised(ManagedProcess("job", [sys.executable, "-c", "import time; time.sleep(30)"],
                                    tmp_path / "job.log")).start()
    try:
        assert job.poll() is None and job.status() == ""
    finally:
        job.process.stop()
