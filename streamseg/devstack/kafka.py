"""Apache Kafka (KRaft, combined mode) from its own Maven artifacts: one node or three.

``streamseg kafka fetch`` resolves ``org.apache.kafka:kafka_2.13`` with its
runtime dependencies and an SLF4J binding through Maven into a cache folder;
:class:`KafkaCluster` formats each node's storage with ``kafka.tools.StorageTool``
and starts ``kafka.Kafka`` on loopback ports, with settings made for tests and
the dev stack: no initial rebalance delay, few internal-topic partitions,
retention set. No tarball, no Docker: a JDK (17+) and the jars are all it needs.

>>> props = node_properties(1, [(1, 9092, 9093)], Path("/tmp/k1"), replication=1)
>>> props["process.roles"], props["controller.quorum.voters"]
('broker,controller', '1@127.0.0.1:9093')
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamseg.devstack.processes import ManagedProcess, free_port, wait_for_port
from streamseg.errors import DevStackError

#: The Apache Kafka release the harness runs (Scala 2.13 build).
KAFKA_VERSION = "4.1.1"
#: Kafka 4 logs through SLF4J 1.7 and Log4j 2; this binds the one to the other.
LOG4J_VERSION = "2.24.3"
#: Classes that must be on the class path for the harness to work.
REQUIRED_CLASSES = ("kafka/Kafka.class", "kafka/tools/StorageTool.class")

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.streamseg</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """rootLogger.level=WARN
rootLogger.appenderRef.out.ref=OUT
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
logger.server.name=kafka.server.KafkaRaftServer
logger.server.level=INFO
"""

#: What a node logs once it serves clients (``KafkaRaftServer``).
STARTED_MESSAGE = b"Kafka Server started"


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the jars live: ``$STREAMSEG_KAFKA_HOME`` or ``~/.cache/streamseg/kafka-<version>``."""
    home = os.environ.get("STREAMSEG_KAFKA_HOME")
    if home:
        return Path(home)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "streamseg" / f"kafka-{version}"


def java_binary() -> str:
    """The ``java`` of ``$JAVA_HOME``, else the one on PATH; a clear error when there is none."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("java")
    if found:
        return found
    raise DevStackError("no JDK found: Apache Kafka needs Java 17+ "
                        "(apt install openjdk-17-jre-headless, or set JAVA_HOME)")


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir(version) / "jars"


def missing_classes(jars: Path) -> list[str]:
    """Which of :data:`REQUIRED_CLASSES` no jar in ``jars`` holds."""
    wanted = set(REQUIRED_CLASSES)
    for jar in sorted(jars.glob("kafka_2.13-*.jar")):
        with zipfile.ZipFile(jar) as zf:
            wanted -= set(zf.namelist())
    return sorted(wanted)


def kafka_available(version: str = KAFKA_VERSION) -> bool:
    """A JDK and the fetched jars are both here (what ``--broker auto`` asks)."""
    try:
        java_binary()
    except DevStackError:
        return False
    jars = jars_dir(version)
    return jars.is_dir() and not missing_classes(jars)


def require_kafka(version: str = KAFKA_VERSION) -> Path:
    """The jars folder, or a DevStackError that says which command to run."""
    java_binary()
    jars = jars_dir(version)
    if not jars.is_dir() or missing_classes(jars):
        raise DevStackError(f"Apache Kafka {version} jars are not in {jars}: "
                            "run `streamseg kafka fetch` (needs Maven)")
    return jars


def fetch(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """Resolve Kafka and its runtime dependencies through Maven into :func:`cache_dir`.

    Idempotent: a complete folder is left as it is. Returns the jars folder.
    """
    jars = jars_dir(version)
    if jars.is_dir() and not missing_classes(jars):
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevStackError("Maven (mvn) is not on PATH: apt install maven, then "
                            "run `streamseg kafka fetch` again")
    staging = Path(tempfile.mkdtemp(prefix="streamseg-kafka-fetch-"))
    try:
        (staging / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
        out = staging / "jars"
        argv = [mvn, "-B", "-f", str(staging / "pom.xml"), "dependency:copy-dependencies",
                f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
        if quiet:
            argv.insert(1, "-q")
        done = subprocess.run(argv, capture_output=quiet, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout or "")[-2000:] + (done.stderr or "")[-2000:] if quiet else ""
            raise DevStackError(f"mvn could not resolve org.apache.kafka:kafka_2.13:{version} "
                                f"(exit {done.returncode}){': ' + tail.strip() if tail else ''}")
        missing = missing_classes(out)
        if missing:
            raise DevStackError(f"the resolved jars lack {', '.join(missing)}")
        jars.parent.mkdir(parents=True, exist_ok=True)
        if jars.exists():
            shutil.rmtree(jars)
        shutil.move(str(out), str(jars))
        (jars.parent / "log4j2.properties").write_text(_LOG4J2)
        return jars
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def new_cluster_id() -> str:
    """A KRaft cluster id (16 random bytes, URL-safe base64), as ``StorageTool random-uuid``."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def node_properties(node_id: int, voters: list[tuple[int, int, int]], data_dir: Path, *,
                    replication: int, min_isr: int = 1,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``server.properties`` of one combined broker+controller node.

    ``voters`` holds ``(node_id, broker_port, controller_port)`` for every node.
    """
    ports = {nid: (bport, cport) for nid, bport, cport in voters}
    bport, cport = ports[node_id]
    internal_isr = str(min(min_isr, replication))
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(f"{n}@127.0.0.1:{c}" for n, _, c in voters),
        "listeners": f"PLAINTEXT://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{bport}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "2",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": internal_isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": internal_isr,
        "share.coordinator.state.topic.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.ms": str(6 * 3600 * 1000),
        "log.retention.bytes": str(1 << 30),
        "log.segment.bytes": str(64 << 20),
        "log.retention.check.interval.ms": "60000",
        "message.max.bytes": str(32 << 20),
        "replica.fetch.max.bytes": str(32 << 20),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "controlled.shutdown.enable": "true",
    }
    props.update(extra or {})
    return props


@dataclass
class KafkaNode:
    """One ``kafka.Kafka`` process; ``start()`` may be called again after ``kill()``."""

    node_id: int
    broker_port: int
    controller_port: int
    dir: Path
    jars: Path
    heap_mb: int = 512
    name: str = ""
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def config_path(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.dir / "kafka.log"

    def write_config(self, props: Mapping[str, str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def format(self, cluster_id: str, extra_args: list[str] | None = None) -> None:
        argv = [java_binary(), "-cp", f"{self.jars}/*", "kafka.tools.StorageTool", "format",
                f"--cluster-id={cluster_id}", "-c", str(self.config_path), *(extra_args or [])]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            said = [ln for ln in (done.stdout + done.stderr).splitlines()
                    if ln.strip() and not ln.startswith("\tat ")]
            raise DevStackError(f"kafka StorageTool format failed for node {self.node_id}: "
                                f"{said[-1][-500:] if said else 'no output'}")

    def start(self) -> KafkaNode:
        log4j = self.jars.parent / "log4j2.properties"
        if not log4j.exists():
            log4j.write_text(_LOG4J2)
        argv = [java_binary(), f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m",
                "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.jars}/*",
                "kafka.Kafka", str(self.config_path)]
        self._mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = ManagedProcess(self.name or f"kafka-{self.node_id}", argv,
                                      self.log_path).start()
        return self

    def wait_started(self, timeout: float) -> None:
        """Block until this start's log says the node serves clients."""
        assert self.process is not None and self.process.proc is not None
        wait_for_port(self.broker_port, timeout, self.process.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise DevStackError(f"kafka node {self.node_id} exited with code "
                                    f"{self.process.proc.returncode}; see {self.log_path}")
            with open(self.log_path, "rb") as fh:
                fh.seek(self._mark)
                if STARTED_MESSAGE in fh.read():
                    return
            time.sleep(0.1)
        raise DevStackError(f"kafka node {self.node_id} did not start in {timeout:.0f}s; "
                            f"see {self.log_path}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL, no controlled shutdown (for failover tests)."""
        if self.process is not None:
            self.process.kill()

    _mark: int = field(default=0, repr=False)


@dataclass
class KafkaCluster:
    """``nodes`` combined-mode KRaft nodes on loopback, in ``workdir``.

    Three nodes get replication factor 3 and ``min.insync.replicas=2``; one node
    gets 1 and 1. ``extra`` adds or overrides server properties on every node.
    """

    workdir: Path
    nodes: int = 1
    extra: Mapping[str, str] = field(default_factory=dict)
    heap_mb: int = 512
    version: str = KAFKA_VERSION
    #: ``(node_id, broker_port, controller_port)`` per node; free ports when empty
    ports: list[tuple[int, int, int]] = field(default_factory=list)
    #: more ``StorageTool format`` arguments, e.g. ``["--add-scram", "SCRAM-SHA-512=[...]"]``
    format_args: list[str] = field(default_factory=list)
    members: list[KafkaNode] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.members)

    @property
    def replication(self) -> int:
        return min(3, self.nodes)

    def start(self, timeout: float = 90.0) -> KafkaCluster:
        jars = require_kafka(self.version)
        ports = self.ports or [(i + 1, free_port(), free_port()) for i in range(self.nodes)]
        cluster_id = new_cluster_id()
        min_isr = 2 if self.replication >= 3 else 1
        for nid, bport, cport in ports:
            name = "broker" if self.nodes == 1 else f"broker-{nid}"
            # a new cluster each start: a data folder left by an earlier run in the same
            # workdir (`streamseg dev` defaults to ./streamseg-data) holds another cluster id
            shutil.rmtree(self.workdir / f"kafka-{nid}" / "data", ignore_errors=True)
            node = KafkaNode(nid, bport, cport, self.workdir / f"kafka-{nid}", jars, self.heap_mb,
                             name)
            node.write_config(node_properties(nid, ports, node.dir / "data",
                                              replication=self.replication, min_isr=min_isr,
                                              extra=self.extra))
            node.format(cluster_id, self.format_args)
            self.members.append(node)
        try:
            for node in self.members:
                node.start()
            for node in self.members:
                node.wait_started(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def node(self, node_id: int) -> KafkaNode:
        for n in self.members:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every node at once (one by one, the last would wait for a lost quorum)."""
        for node in self.members:
            if node.process is not None:
                node.process.terminate()
        for node in self.members:
            node.stop(timeout)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
