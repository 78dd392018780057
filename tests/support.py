"""Helpers every kind of test shares: waiting on a condition, and a publisher that records.

Unit and integration tests import these from one place, so a fix to how tests
wait or record lands everywhere at once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from streamseg.engine import OutRecord
from streamseg.settings import Settings

What = str | Callable[[], str]
T = TypeVar("T")


def _timed_out(timeout: float, what: What) -> AssertionError:
    """The failure of a wait; ``what`` is called only now, so it can describe the final state."""
    return AssertionError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")


async def wait_until(cond: Callable[[], bool | Awaitable[bool]], timeout: float, what: What,
                     interval: float = 0.1) -> None:
    """Return once ``cond()`` (sync or async) holds; fail the test after ``timeout`` seconds.

    >>> asyncio.run(wait_until(lambda: True, 1, "nothing"))
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = cond()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(interval)
    raise _timed_out(timeout, what)


def wait_until_sync(cond: Callable[[], bool], timeout: float, what: What, interval: float = 0.05) -> None:
    """:func:`wait_until` for tests without an event loop (processes exiting, servers starting).

    >>> wait_until_sync(lambda: True, 1, "nothing")
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise _timed_out(timeout, what)


async def retry_transient(attempt: Callable[[float], Awaitable[T]], timeout: float,
                          transient: tuple[type[BaseException], ...], pause: float = 0.5) -> T:
    """``await attempt(remaining seconds)`` until it returns; one of the ``transient``
    exceptions is tried again after ``pause`` until ``timeout`` has passed, then re-raised.

    >>> tries = []
    >>> async def flaky(remaining: float) -> str:
    ...     tries.append(remaining)
    ...     if len(tries) < 3:
    ...         raise ConnectionError("not yet")
    ...     return "done"
    >>> asyncio.run(retry_transient(flaky, 5, (ConnectionError,), pause=0)), len(tries)
    ('done', 3)
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await attempt(max(0.0, deadline - time.monotonic()))
        except transient:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(pause)


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, exited but not yet reaped, is not alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


class Recorder:
    """A publisher that keeps what the engine would have sent to Kafka (or fails like a lost broker).

    >>> rec = Recorder()
    >>> asyncio.run(rec.publish([("t", b"k", b"v")]))
    >>> rec.records
    [('t', b'k', b'v')]
    """

    def __init__(self, fail: bool = False) -> None:
        self.records: list[OutRecord] = []
        self.fail = fail

    async def publish(self, records: Sequence[OutRecord]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.records += records

    def updates(self, settings: Settings) -> int:
        """How many of the records went to the segment-updates topic."""
        return sum(topic == settings.topic_segment_updates for topic, _, _ in self.records)


def load_script(name: str) -> ModuleType:
    """``load_tests/<name>.py`` as a module (registered in ``sys.modules``: its dataclasses
    look their module up), so a test can run a benchmark small."""
    path = Path(__file__).parents[1] / "load_tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
