"""The Apache Kafka harness's pure parts: node settings, the JDK and jar checks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from streamseg.devstack import kafka
from streamseg.devstack.processes import DevStack, resolve_broker
from streamseg.errors import DevStackError

ROOT = Path(__file__).parents[2]


def test_three_nodes__replicate_three_ways_with_two_in_sync() -> None:
    voters = [(1, 9001, 9101), (2, 9002, 9102), (3, 9003, 9103)]
    props = kafka.node_properties(2, voters, Path("/d"), replication=3, min_isr=2)
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert props["node.id"] == "2"
    assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert int(props["offsets.topic.num.partitions"]) <= 4
    assert int(props["log.retention.ms"]) > 0 and int(props["log.retention.bytes"]) > 0


def test_one_node__needs_no_replicas_and_extra_settings_win() -> None:
    props = kafka.node_properties(1, [(1, 9001, 9101)], Path("/d"), replication=1,
                                  extra={"message.max.bytes": "1000"})
    assert props["offsets.topic.replication.factor"] == props["min.insync.replicas"] == "1"
    assert props["share.coordinator.state.topic.min.isr"] == "1"
    assert props["message.max.bytes"] == "1000"


def test_cluster_id__is_a_kraft_uuid_and_never_reads_as_an_option() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200 and all(len(i) == 22 for i in ids)
    # it is passed as --cluster-id=ID, so an id starting with '-' cannot be taken for a flag
    node = kafka.KafkaNode(1, 1, 2, Path("/d"), Path("/j"))
    assert node.config_path == Path("/d/server.properties")


def test_no_jdk__is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevStackError, match=r"no JDK found: Apache Kafka needs Java 17\+"):
        kafka.java_binary()
    assert not kafka.kafka_available()
    assert resolve_broker("auto") == "tansu"  # the pip-only fallback
    with pytest.raises(DevStackError, match="no JDK found"):
        DevStack(workdir=tmp_path / "s", broker="kafka").start()


def test_missing_jars__name_the_command_that_fetches_them(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMSEG_KAFKA_HOME", str(tmp_path))
    with pytest.raises(DevStackError, match="run `streamseg kafka fetch`"):
        kafka.require_kafka()
    jars = tmp_path / "jars"
    jars.mkdir()
    with zipfile.ZipFile(jars / f"kafka_2.13-{kafka.KAFKA_VERSION}.jar", "w") as zf:
        zf.writestr("kafka/Kafka.class", b"")
    assert kafka.missing_classes(jars) == ["kafka/tools/StorageTool.class"]
    with pytest.raises(DevStackError, match="streamseg kafka fetch"):
        kafka.require_kafka()


def test_unknown_broker__is_refused() -> None:
    with pytest.raises(DevStackError, match="unknown broker 'redpanda'"):
        resolve_broker("redpanda")


def test_compose_runs_the_kafka_release_the_tests_run() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka.KAFKA_VERSION}"
