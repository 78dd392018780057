"""Faults for real processes: a Valkey that can stop and come back, a link to the broker to cut.

The session-wide broker and Valkey serve every test, so an outage test starts
its own. :func:`active_controller` names the KRaft node to kill to take the
controller away (failover tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from streamseg.devstack import ManagedProcess, free_port
from streamseg.devstack.kafka import KafkaCluster
from streamseg.devstack.processes import valkey_binary, wait_for_port

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
    """An Apache Kafka node of one test's own that every client reaches through a :class:`TcpProxy`.

    The node advertises the proxy's address, so after bootstrap clients still
    connect through it; the proxy, not the broker, is cut (KRaft's controller
    listener is not behind it, so the node itself stays healthy).
    """
    port = free_port()
    proxy = TcpProxy(port).start()
    cluster = KafkaCluster(workdir / "kafka", nodes=1, ports=[(1, port, free_port())],
                           extra={"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}"})
    try:
        cluster.start()
        yield proxy
    finally:
        cluster.stop()
        proxy.close()


# --- which KRaft node is the active controller ---------------------------------------------
#
# In KRaft a Metadata (or DescribeCluster) response names a random live broker as
# "controller" (clients cannot talk to the controller), so aiokafka's
# ``describe_cluster()["controller_id"]`` is no way to find it. DescribeQuorum (KIP-595,
# what ``kafka-metadata-quorum describe --status`` sends; brokers forward it to the
# controller) reports the leader of the ``__cluster_metadata`` Raft quorum: the active
# controller. aiokafka has no such request, so here is its version 0.

_REPLICA_STATE = (("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields))


class DescribeQuorumResponse_v0(Response):
    API_KEY = 55
    API_VERSION = 0
    SCHEMA = Schema(
        ("error_code", Int16),
        ("topics", CompactArray(
            ("topic_name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("error_code", Int16), ("leader_id", Int32),
                ("leader_epoch", Int32), ("high_watermark", Int64),
                ("current_voters", CompactArray(*_REPLICA_STATE)),
                ("observers", CompactArray(*_REPLICA_STATE)),
                ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        ("topics", CompactArray(
            ("topic_name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v0]):
    """DescribeQuorum of the cluster metadata partition (``__cluster_metadata``-0)."""

    API_KEY = 55

    def build(self, request_struct_class: type[DescribeQuorumRequest_v0]) -> DescribeQuorumRequest_v0:
        return request_struct_class([("__cluster_metadata", [(0, {})], {})], {})


async def active_controller(bootstrap: list[str]) -> int:
    """The node id of the active KRaft controller (the metadata quorum's leader)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = (await admin._send_request(DescribeQuorumRequest())).to_object()
    finally:
        await admin.close()
    assert resp["error_code"] == 0, resp
    [topic] = resp["topics"]
    [part] = topic["partitions"]
    assert part["error_code"] == 0 and part["leader_id"] >= 0, part
    return int(part["leader_id"])
