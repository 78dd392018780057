"""Every ``streamseg`` command answers a bad setting, an unreachable Redis or an unreachable
broker with one line on stderr (exit 2: configuration, 1: runtime), never a traceback; and
``streamseg inspect`` shows what the lookup API shows.

Each case runs the real command as a child process (``python -m streamseg``);
the servers it should reach are the session's real Kafka and Valkey, the
unreachable ones a loopback port nothing listens on.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from streamseg.api.lookup import customer_body
from streamseg.devstack import DevStack, free_port
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.publish.records import CatalogEntry
from streamseg.settings import Settings
from tests.integration.conftest import settings_env, unique_settings

#: every command, with arguments that would make it do its work
COMMANDS: dict[str, list[str]] = {
    "worker": ["worker"],
    "api": ["api", "--port", "0"],
    "dev": ["dev", "--duration", "1"],
    "generate": ["generate", "--customers", "3", "--days", "1"],
    "replay": ["replay", "{history}", "--no-progress"],
    "inspect": ["inspect", "c1"],
    "forget": ["forget", "c1"],
    "bench": ["bench", "--short", "--out", "{tmp}"],
    "kafka fetch": ["kafka", "fetch"],
    "kafka start": ["kafka", "start", "--workdir", "{tmp}"],
}

#: a bad setting -> what the one line must name
BAD_SETTINGS = {
    "STREAMSEG_BATCH_MAX=abc": "STREAMSEG_BATCH_MAX",
    "STREAMSEG_REDIS_URL=notaurl": "STREAMSEG_REDIS_URL",
    "STREAMSEG_API_TOKENS=ops:short": "STREAMSEG_API_TOKENS",
}

#: the commands that reach Redis or Kafka given by the settings and stop without them. The
#: others either start servers of their own (dev, bench, kafka) or are meant to outlive an
#: outage: the worker waits for Redis (docs/operations.md), ``streamseg api`` serves and its
#: /ready answers 503 until Redis is back, and it publishes to Kafka only for an erasure.
NEEDS_REDIS = ["inspect", "forget"]
NEEDS_KAFKA = ["worker", "generate", "replay", "forget"]


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


def run(command: str, env: dict[str, str], tmp_path: Path) -> Ran:
    history = tmp_path / "history.csv"
    history.write_text("customer_id,ts,amount,currency\nc1,2026-01-01T00:00:00Z,5.5,USD\n")
    args = [a.format(history=history, tmp=tmp_path / "out") for a in COMMANDS[command]]
    done = subprocess.run([sys.executable, "-m", "streamseg", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=90, check=False)
    return Ran(done.returncode, done.stdout, done.stderr)


def env_for(settings: Settings | None, **overrides: str) -> dict[str, str]:
    """The environment of a child: ``settings`` (none from the developer's shell), a 3 s
    wait for an unreachable broker, then ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMSEG_")}
    if settings is not None:
        env.update((k, v) for k, v in settings_env(settings).items() if k.startswith("STREAMSEG_"))
    return {**env, "STREAMSEG_KAFKA_CONNECT_TIMEOUT_S": "3", **overrides}


def assert_one_line(ran: Ran, code: int, prefix: str, *fragments: str) -> None:
    """Exit ``code``, and stderr is exactly one line starting with ``prefix``."""
    lines = ran.stderr.splitlines()
    assert ran.code == code, ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
    assert len(lines) == 1, ran.stderr[-3000:]
    assert lines[0].startswith(prefix), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def prefix_of(command: str) -> str:
    return "erasure of 'c1' failed: " if command == "forget" else f"streamseg {command.split()[0]}: "


@pytest.mark.parametrize("bad", BAD_SETTINGS)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_setting__one_line_naming_it_and_exit_2(command: str, bad: str, tmp_path: Path) -> None:
    name, _, value = bad.partition("=")
    ran = run(command, env_for(None, **{name: value}), tmp_path)
    assert_one_line(ran, 2, f"streamseg {command.split()[0]}: invalid settings: ", BAD_SETTINGS[bad])
    assert value not in ran.stderr  # the value itself never shows (it may be a secret)


@pytest.mark.parametrize("command", NEEDS_REDIS)
def test_unreachable_redis__one_line_naming_the_address_and_exit_1(
        command: str, settings: Settings, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    ran = run(command, env_for(settings, STREAMSEG_REDIS_URL=f"redis://{address}/0"), tmp_path)
    assert_one_line(ran, 1, prefix_of(command), "cannot reach Redis", address,
                    "STREAMSEG_REDIS_URL")


@pytest.mark.parametrize("command", ["worker", *NEEDS_REDIS])
def test_refused_redis_password__one_line_naming_the_setting_and_exit_1(
        command: str, settings: Settings, tmp_path: Path) -> None:
    """A wrong password is no outage: the worker stops instead of retrying forever (and
    dead-letters nothing), the tools answer at once."""
    refused = settings.redis_url.replace("redis://", "redis://nobody:wrong-password@", 1)
    # a worker that started logs its start-up at INFO: only warnings and its answer here
    ran = run(command, env_for(settings, STREAMSEG_REDIS_URL=refused, STREAMSEG_LOG_LEVEL="warn"),
              tmp_path)
    if command == "worker":  # it had started: its log lines come first, the answer last
        assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
        ran = Ran(ran.code, ran.stdout, ran.stderr.splitlines()[-1] if ran.stderr.strip() else "")
    assert_one_line(ran, 1, prefix_of(command), "Redis refused streamseg", "STREAMSEG_REDIS_URL")
    assert "wrong-password" not in ran.stderr


@pytest.mark.parametrize("command", NEEDS_KAFKA)
def test_unreachable_broker__one_line_naming_the_address_and_exit_1(
        command: str, settings: Settings, tmp_path: Path) -> None:
    ran = run(command, env_for(settings, STREAMSEG_KAFKA_BOOTSTRAP="127.0.0.1:1"), tmp_path)
    assert_one_line(ran, 1, prefix_of(command), "cannot reach Kafka at 127.0.0.1:1",
                    "STREAMSEG_KAFKA_BOOTSTRAP")


# --- inspect shows what the lookup API shows ----------------------------------------------------


#: the history entry the membership script writes on a first assignment (see Keys.history)
FIRST_ASSIGNED = b'[86400000,null,2,3,"monetary_30d"]'


async def _store_customer(settings: Settings) -> dict[str, float | str]:
    """A customer in segment 2 of model version 3, its catalog entry and a worker's clock."""
    keys = Keys(settings.key_prefix)
    store = RedisFeatureStore.from_url(settings.redis_url, keys,
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    try:
        await store.client.hset(keys.state("c1"), mapping={
            "first_ts": 0.0, "last_ts": 864e5, "seg": 2.0, "seg_dist": 0.5, "seg_version": 3.0,
            "seg_why": orjson.dumps([{"feature": "monetary_30d", "value": 90.0,
                                      "previous_mean": None, "new_mean": 80.0}])})
        entry = CatalogEntry(segment_id=2, status="active", model_version=3,
                             name="Bargain hunters", profile=None, updated_ts="2026-01-02T00:00:00Z")
        await store.write_catalog({2: entry.to_bytes()})
        await store.client.lpush(keys.history("c1"), FIRST_ASSIGNED)  # type: ignore[misc]
        await store.write_worker_status("w1", {"clock_ms": 2 * 864e5, "model_version": 3.0,
                                               "at_ms": 0.0})
        return await store.state("c1")
    finally:
        await store.close()


def test_inspect__shows_the_lookup_apis_fields(stack: DevStack, tmp_path: Path) -> None:
    settings = unique_settings(stack)
    state = asyncio.run(_store_customer(settings))
    ran = run("inspect", env_for(settings), tmp_path)
    assert ran.code == 0, ran.stderr[-3000:]
    shown = orjson.loads(ran.stdout)
    assert shown == customer_body("c1", state, names={2: "Bargain hunters"}, now_ms=2 * 864e5,
                                  history=[FIRST_ASSIGNED])
    assert (shown["segment_id"], shown["segment_name"], shown["distance"],
            shown["model_version"]) == (2, "Bargain hunters", 0.5, 3)
    assert [(h["from_segment"], h["to_segment_name"]) for h in shown["history"]] == [
        (None, "Bargain hunters")]


def test_inspect__unknown_customer_is_one_line_and_exit_1(stack: DevStack, tmp_path: Path) -> None:
    settings = unique_settings(stack)
    assert_one_line(run("inspect", env_for(settings), tmp_path), 1, "streamseg inspect: ", "'c1'")
