"""Faults for real processes: a Valkey that can stop and come back, a link to the broker to cut.

The session-wide broker and Valkey serve every test, so an outage test starts
its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path

from streamseg.devstack import ManagedProcess, free_port
from streamseg.devstack.processes import tansu_binary, valkey_binary, wait_for_port

from .conftest import WorkerProcess


class PrivateValkey:
    """A Valkey of one test's own, persisted (AOF, fsync always) so it can stop and come back."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "valkey"
        self.dir.mkdir()
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateValkey:
        argv = [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)]
        self.proc = ManagedProcess("valkey", argv, self.dir / "valkey.log").start()
        wait_for_port(self.port, 30, self.proc.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def pause(worker: WorkerProcess, sig: signal.Signals) -> None:
    """SIGSTOP / SIGCONT a worker: freeze it to look at the world it left."""
    assert worker.proc.proc is not None
    os.killpg(worker.proc.proc.pid, sig)


class TcpProxy:
    """127.0.0.1:port -> target port, on a thread of its own; :meth:`cut` is a network partition.

    While cut, every open connection is reset and new ones are reset on accept.
    """

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)
        self.links: set[asyncio.StreamWriter] = set()
        self.open = True
        self.server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        self._call(self._set(False))

    def restore(self) -> None:
        self._call(self._set(True))

    def close(self) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _call(self, coro: Awaitable[None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _set(self, open_: bool) -> None:
        self.open = open_
        if not open_:
            for w in list(self.links):
                w.transport.abort()

    async def _close(self) -> None:
        await self._set(False)
        if self.server is not None:
            self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self.links |= pair
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.links -= pair


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()  # Kafka never half-closes: one side gone ends the link


@contextlib.contextmanager
def private_broker(workdir: Path) -> Iterator[TcpProxy]:
    """A Tansu of one test's own that every client reaches through a :class:`TcpProxy`.

    Tansu advertises the proxy's address, so after bootstrap clients still
    connect through it. Tansu keeps topics in memory, so it must keep running
    through the partition: the proxy, not the broker, is cut.
    """
    port = free_port()
    proxy = TcpProxy(port).start()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}", "--storage-engine", "memory://tansu/"]
    broker = ManagedProcess("broker", argv, workdir / "broker.log").start()
    try:
        wait_for_port(port, 30, broker.proc)
        yield proxy
    finally:
        broker.stop()
        proxy.close()
