"""Redis Cluster under the feature store: the client, where the shared keys live, durable writes.

A cluster is chosen by the URL: ``redis+cluster://host:port[,host:port...]``
(``rediss+cluster://`` for TLS) names seed nodes; any of them answering is
enough, the rest of the cluster is discovered. redis-py's ``RedisCluster``
follows ``MOVED``/``ASK`` redirects and re-reads the slot map after a failover;
a pipeline is sent as one request per node, in parallel.

Per-customer keys carry the customer id as a hash tag (see
:mod:`streamseg.features.keys`), so each customer's scripts stay atomic. The
keys every worker writes, which a single Redis holds once, are split so that
no node takes more than its share (:class:`Placement`):

* segment sizes: one counter hash per slot, in the slot of the customers it
  counts, so the membership script updates a customer and its counter
  atomically (one global hash would be a CROSSSLOT error); a read sums them with
  one script call per master;
* the re-scoring index and the held set: ``BUCKETS`` sorted sets / sets, each
  in the slot range of the customers it lists (so on their node);
* the catalog and worker status stay single keys (written by the leader after
  a refit, and once a second per worker).

With ``wait_replicas`` the store does not return from a write until that many
replicas of every node written to acknowledged it (``WAIT``, sent on the same
connection as the writes), so an acknowledged batch survives a master's loss.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError, TryAgainError

from streamseg.errors import StoreUnavailable
from streamseg.features.fastread import HashReader
from streamseg.features.keys import Keys

Client = aioredis.Redis | RedisCluster
SLOTS = 16384
#: Re-scoring and held sets per cluster: each covers SLOTS // BUCKETS consecutive slots.
BUCKETS = 16
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")

#: Sum the segment-size counters named in ARGV, all on the node running it. A script
#: without declared keys may read any key its node serves (not one it does not: that
#: is an error, and the caller re-reads the slot map).
SUM_SIZES_LUA = """
local total = {}
for _, key in ipairs(ARGV) do
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do total[flat[i]] = (total[flat[i]] or 0) + tonumber(flat[i + 1]) end
end
local out = {}
for seg, n in pairs(total) do out[#out + 1] = seg; out[#out + 1] = n end
return out
"""


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster.

    >>> is_cluster_url("redis+cluster://10.0.0.1:6379,10.0.0.2:6379"), is_cluster_url("redis://h:6379/0")
    (True, False)
    """
    return url.startswith(CLUSTER_SCHEMES)


def seed_nodes(url: str) -> list[tuple[str, int]]:
    """The seed nodes a cluster URL names.

    >>> seed_nodes("redis+cluster://user:pw@10.0.0.1:7000,10.0.0.2")
    [('10.0.0.1', 7000), ('10.0.0.2', 6379)]
    """
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    out = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":") if ":" in part else (part.strip(), "", "6379")
        out.append((host, int(port or 6379)))
    return out


def connect(url: str, **kw: Any) -> RedisCluster:
    """A ``RedisCluster`` client for a ``redis+cluster://`` URL (user and password apply to all nodes)."""
    parts = urlsplit(url.replace("+cluster", "", 1))
    auth = parts.netloc.rpartition("@")[0]
    user, _, password = auth.partition(":")
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in seed_nodes(url)],
        username=user or None, password=password or None, ssl=parts.scheme == "rediss", **kw)


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each slot, a short hash tag that Redis Cluster hashes to it."""
    tags: list[str | None] = [None] * SLOTS
    left, i = SLOTS, 0
    while left:
        tag = f"~{i:x}"
        slot = key_slot(tag.encode())
        if tags[slot] is None:
            tags[slot] = tag
            left -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


class Placement:
    """Where the shared keys live on a single Redis: one key each, as always."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def sizes(self, customer_id: str) -> str:
        """The segment-size counter a customer's membership changes go to."""
        return self.keys.segment_sizes()

    def scored(self, customer_id: str) -> str:
        """The re-scoring index that lists this customer."""
        return self.keys.scored()

    def all_scored(self) -> list[str]:
        return [self.keys.scored()]

    def held(self, customer_id: str) -> str:
        """The held set this customer goes to."""
        return self.keys.held()

    def all_held(self) -> list[str]:
        return [self.keys.held()]

    def by(self, key_of: Callable[[str], str], customer_ids: Iterable[str]) -> dict[str, list[str]]:
        """Customers grouped by the key ``key_of`` places them in."""
        out: dict[str, list[str]] = {}
        for cid in customer_ids:
            out.setdefault(key_of(cid), []).append(cid)
        return out

    async def grouped(self, client: Client, command: str, key_of: Callable[[str], str],
                      customer_ids: Sequence[str]) -> None:
        """``command key *customers`` for each key ``key_of`` places the customers in; one round trip."""
        pipe = client.pipeline(transaction=False)
        for key, cids in self.by(key_of, customer_ids).items():
            pipe.execute_command(command, key, *cids)
        await pipe.execute()

    async def oldest(self, client: Client, before_ms: float, limit: int) -> list[str]:
        """Up to ``limit`` customer ids scored before ``before_ms``, oldest first, over every index."""
        pipe = client.pipeline(transaction=False)
        for key in self.all_scored():
            pipe.zrangebyscore(key, "-inf", f"({before_ms!r}", start=0, num=limit, withscores=True)
        found = sorted((score, c) for part in await pipe.execute() for c, score in part)
        return [c.decode() if isinstance(c, bytes) else str(c) for _, c in found[:limit]]


class ClusterPlacement(Placement):
    """Where the shared keys live on a Redis Cluster (see the module doc)."""

    def slot(self, customer_id: str) -> int:
        return key_slot(self.keys.state(customer_id).encode())

    def sizes(self, customer_id: str) -> str:
        return self.keys.segment_sizes_at(slot_tags()[self.slot(customer_id)])

    def _bucket_tag(self, customer_id: str) -> str:
        width = SLOTS // BUCKETS
        return slot_tags()[self.slot(customer_id) // width * width]

    def scored(self, customer_id: str) -> str:
        return self.keys.scored_at(self._bucket_tag(customer_id))

    def all_scored(self) -> list[str]:
        return [self.keys.scored_at(slot_tags()[b * (SLOTS // BUCKETS)]) for b in range(BUCKETS)]

    def held(self, customer_id: str) -> str:
        return self.keys.held_at(self._bucket_tag(customer_id))

    def all_held(self) -> list[str]:
        return [self.keys.held_at(slot_tags()[b * (SLOTS // BUCKETS)]) for b in range(BUCKETS)]


async def cluster_sizes(client: RedisCluster, keys: Keys) -> dict[int, int]:
    """Segment sizes: every slot's counter, summed on its node (one script call per master)."""
    out: dict[int, int] = {}
    for flat in await _sizes_per_node(client, keys):
        for i in range(0, len(flat), 2):
            out[int(flat[i])] = out.get(int(flat[i]), 0) + int(flat[i + 1])
    return out


async def _sizes_per_node(client: RedisCluster, keys: Keys) -> list[list[bytes]]:
    for _attempt in range(2):
        by_node: dict[str, tuple[ClusterNode, list[str]]] = {}
        for slot, tag in enumerate(slot_tags()):
            node = client.nodes_manager.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, []))[1].append(keys.segment_sizes_at(tag))
        try:
            return list(await asyncio.gather(*(
                client.execute_command("EVAL", SUM_SIZES_LUA, 0, *names, target_nodes=node)
                for node, names in by_node.values())))
        except ResponseError as exc:
            if "non local key" not in str(exc):
                raise
            await client.nodes_manager.initialize()  # a slot moved: read the map again
    raise TryAgainError("TRYAGAIN slots moved while segment sizes were read")


class ClusterHashReader:
    """The lean hash reads (:class:`HashReader`) on a cluster: one connection per master.

    Keys are grouped by the node the client's slot map names; a redirect or a lost
    node (a failover, a resharding) sends that call through redis-py's cluster
    pipeline instead, which follows it and refreshes the map for the next call.
    """

    def __init__(self, client: RedisCluster, url: str, *, timeout: float = 5.0) -> None:
        self.client = client
        self.auth = urlsplit(url).netloc.rpartition("@")[0]
        self.timeout = timeout
        self.readers: dict[str, HashReader] = {}

    def _reader(self, node: ClusterNode) -> HashReader:
        if node.name not in self.readers:
            auth = f"{self.auth}@" if self.auth else ""
            self.readers[node.name] = HashReader(f"redis://{auth}{node.host}:{node.port}",
                                                 timeout=self.timeout)
        return self.readers[node.name]

    async def hgetall(self, keys: Sequence[bytes]) -> list[list[bytes]]:
        return await self.commands([(b"HGETALL", k) for k in keys])

    async def commands(self, requests: Sequence[Sequence[bytes]]) -> list[Any]:
        """:meth:`HashReader.commands`, each request sent to the master of its key (``r[1]``)."""
        if not self.client.nodes_manager.slots_cache:
            await self.client.initialize()
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, request in enumerate(requests):
            node = self.client.nodes_manager.get_node_from_slot(key_slot(request[1]))
            groups.setdefault(node.name, (node, []))[1].append(i)
        try:
            parts = await asyncio.gather(*(self._reader(node).commands([requests[i] for i in idx])
                                           for node, idx in groups.values()))
        except (ResponseError, RedisConnectionError) as exc:
            if isinstance(exc, ResponseError) and not str(exc).startswith(("MOVED", "ASK")):
                raise
            return await self._through_redis_py(requests)
        out: list[Any] = [[] for _ in requests]
        for (_, idx), replies in zip(groups.values(), parts, strict=True):
            for i, reply in zip(idx, replies, strict=True):
                out[i] = reply
        return out

    async def _through_redis_py(self, requests: Sequence[Sequence[bytes]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for name, *args in requests:
            pipe.execute_command(name.decode(), *args)
        replies = await pipe.execute()
        # redis-py built a dict for HGETALL: flat, as hiredis gives it
        return [[x for kv in reply.items() for x in kv] if isinstance(reply, dict) else reply
                for reply in replies]

    async def close(self) -> None:
        for reader in self.readers.values():
            await reader.close()
        self.readers.clear()


@dataclass
class Durable:
    """Writes that return only once ``replicas`` replicas of each node written to have them."""

    client: Client
    replicas: int = 0
    timeout_ms: int = 1000

    def owners(self, keys: Sequence[str]) -> dict[int, ClusterNode]:
        """The node serving each written slot, as this client's slot map has it."""
        if not isinstance(self.client, RedisCluster):
            return {}
        manager = self.client.nodes_manager
        return {s: manager.get_node_from_slot(s) for s in {key_slot(k.encode()) for k in keys}}

    async def scripted(self, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """``script`` called once per (keys, args), pipelined and durable; loaded first where a
        node lacks it (a promoted replica, a restarted server)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for keys, args in calls:  # EVALSHA by name: redis-py's cluster pipeline blocks evalsha()
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies = await self.execute(pipe, [keys[0] for keys, _ in calls])
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                await self.client.script_load(script.script)
                continue
            for r in replies:
                if isinstance(r, Exception):
                    raise r
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    async def execute(self, pipe: Any, written: Sequence[str]) -> list[Any]:
        """Run ``pipe`` (``raise_on_error=False``), then ``WAIT`` on each node ``written`` is on.

        A redirect (a slot that moved meanwhile) sends a write on another connection
        than its ``WAIT``: then :class:`StoreUnavailable`, and the caller's retry
        (idempotent) is covered by a ``WAIT`` on the right node.
        """
        if not self.replicas:
            return list(await pipe.execute(raise_on_error=False))
        planned = self.owners(written)
        waits: list[ClusterNode | None] = list({n.name: n for n in planned.values()}.values()) or [None]
        for node in waits:
            kw = {"target_nodes": node} if node is not None else {}
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms, **kw)
        replies = list(await pipe.execute(raise_on_error=False))
        acked = replies[len(replies) - len(waits):]
        if _names(self.owners(written)) != _names(planned):
            raise StoreUnavailable("Redis Cluster slots moved during a write: retrying it")
        for n in acked:
            if isinstance(n, Exception):
                raise n
            if int(n) < self.replicas:
                raise StoreUnavailable(f"Redis: a write reached {n} of {self.replicas} replicas "
                                       f"within {self.timeout_ms} ms")
        return replies[: len(replies) - len(waits)]


def _names(owners: dict[int, ClusterNode]) -> dict[int, str]:
    return {slot: node.name for slot, node in owners.items()}
