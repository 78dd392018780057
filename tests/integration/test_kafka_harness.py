"""The Apache Kafka harness: one and three nodes come up, serve, and leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamseg.devstack.kafka import KAFKA_VERSION, KafkaCluster
from tests.support import alive, wait_until_sync

pytestmark = pytest.mark.integration


async def describe(bootstrap: str, topic: str, replication: int = 1) -> tuple[list[int], list[int]]:
    """Broker ids of the cluster, and the replica count of each of a new topic's partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2,
                                            replication_factor=replication)])
        cluster = await admin.describe_cluster()
        deadline = time.monotonic() + 30
        while True:
            meta = (await admin.describe_topics([topic]))[0]
            if meta["partitions"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    brokers = sorted(b["node_id"] for b in cluster["brokers"])
    return brokers, [len(p["replicas"]) for p in meta["partitions"]]


def test_three_nodes__form_one_cluster_replicating_three_ways_and_stop_cleanly(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, nodes=3).start()
    try:
        pids = [n.process.proc.pid for n in cluster.members]  # type: ignore[union-attr]
        brokers, replicas = asyncio.run(describe(cluster.bootstrap, "rf3", replication=3))
        assert brokers == [1, 2, 3]
        assert replicas == [3, 3]
    finally:
        cluster.stop()
    assert [p for p in pids if alive(p)] == []


def test_a_second_start_in_the_same_workdir__is_a_new_cluster(tmp_path: Path) -> None:
    """`streamseg dev` twice in one folder: the first run's data must not stop the second."""
    for topic in ("first", "second"):
        with KafkaCluster(tmp_path, nodes=1) as cluster:
            brokers, replicas = asyncio.run(describe(cluster.bootstrap, topic))
            assert brokers == [1] and replicas == [1, 1]


def test_a_killed_node__restarts_on_its_own_data(tmp_path: Path) -> None:
    with KafkaCluster(tmp_path, nodes=1) as cluster:
        asyncio.run(describe(cluster.bootstrap, "kept"))
        node = cluster.members[0]
        node.kill()
        assert not node.running
        node.start().wait_started(60)
        brokers, replicas = asyncio.run(describe(cluster.bootstrap, "kept2"))
        assert brokers == [1] and replicas == [1, 1]


def test_kafka_start__prints_the_bootstrap_and_ctrl_c_stops_every_node(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "streamseg", "kafka", "start", "--nodes", "1",
                             "--workdir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"Apache Kafka {KAFKA_VERSION}, 1 node(s): "
                               "STREAMSEG_KAFKA_BOOTSTRAP=127.0.0.1:"), line
        bootstrap = line.split("=", 1)[1].split()[0]
        assert asyncio.run(describe(bootstrap, "cli"))[0] == [1]
        java = [int(p.name) for p in Path("/proc").glob("[0-9]*")
                if str(tmp_path) in _cmdline(p)]
        assert java, "no Kafka JVM found for this workdir"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until_sync(lambda: not any(alive(p) for p in java), 10,
                    lambda: f"every Kafka JVM to exit; alive: {[p for p in java if alive(p)]}")


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.parametrize("command", [["dev", "--broker", "kafka", "--duration", "5"],
                                     ["kafka", "start"]])
def test_no_jdk__kafka_commands_say_so_in_one_line(tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python and streamseg, no java
    done = subprocess.run([sys.executable, "-m", "streamseg", *command, "--workdir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"streamseg {command[0]}: no JDK found: Apache Kafka needs Java 17+ "
        "(apt install openjdk-17-jre-headless, or set JAVA_HOME)"], done.stderr
