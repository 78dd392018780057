"""/readyz tells which dependency is missing, on a private broker and Valkey we can stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamseg.devstack import DevStack
from streamseg.topics import ensure_topics
from tests.openapi_check import assert_matches_openapi
from tests.support import wait_until

from .conftest import WorkerProcess, unique_settings

pytestmark = pytest.mark.integration


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(10)) as resp:
        return resp.status, await resp.json()


async def checks_become(port: int, want: dict[str, bool], timeout: float = 30.0) -> dict[str, Any]:
    """The /readyz body once its checks are ``want`` (all of which say: not ready)."""
    last: list[tuple[int, dict[str, Any]]] = []

    async def reached() -> bool:
        last[:] = [await readiness(port)]
        return last[0][1]["checks"] == want

    await wait_until(reached, timeout, lambda: f"checks {want}; they stayed {last[0][1]['checks']}",
                     interval=0.3)
    status, body = last[0]
    assert status == 503 and body["ready"] is False
    assert_matches_openapi("/readyz", "get", status, body)
    return body


async def test_readyz__reports_a_lost_redis_and_a_lost_broker(tmp_path: Path) -> None:
    with DevStack(workdir=tmp_path / "stack") as own:
        settings = unique_settings(own)
        await ensure_topics(settings)
        worker = WorkerProcess(settings, tmp_path).start()
        try:
            # no events yet: the model is not warmed up, everything else is there
            await checks_become(settings.web_port, {"broker": True, "redis": True, "model": False})
            own.process("valkey").stop()
            await checks_become(settings.web_port, {"broker": True, "redis": False, "model": False})
            own.process("broker").stop()
            await checks_become(settings.web_port, {"broker": False, "redis": False, "model": False})
        finally:
            worker.proc.kill()  # its broker is gone: a graceful stop would only wait
