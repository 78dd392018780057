"""Redis feature store: the one owner of Redis I/O and of its errors.

Everything in streamseg reads and writes Redis through :class:`RedisFeatureStore`
(its hot hash reads go over :class:`~streamseg.features.fastread.HashReader`, a
transport only the store uses).

Error contract, for every method of the store:

* Redis unreachable or refusing all work for a while -- connection refused or
  reset, a timeout, any ``OSError``, a server still loading its data
  (``LOADING``), full (``OOM``), a read-only replica, a failed snapshot
  (``MISCONF``), a long script (``BUSY``), a replica without its master
  (``MASTERDOWN``), a cluster in transition (``TRYAGAIN``, ``CLUSTERDOWN``) --
  raises :class:`~streamseg.errors.StoreUnavailable`. Callers catch only that,
  wait and retry (the engine never acks meanwhile; the API answers 503).
* Any other error reply is about the request, not the server (``WRONGTYPE``, a
  script error, a missing ACL permission): it propagates unchanged as redis-py's
  exception, for the caller to treat as a bug (the engine dead-letters the batch).

:func:`is_outage` draws that line and :func:`unavailable_on_outage` applies it;
no other module catches Redis exceptions.

One batch of events costs one round trip: the events are grouped by customer
and each customer's group is applied by one call of a Lua script
(``apply_events.lua``), all calls pipelined together. The script is atomic per
customer, refuses event ids it has already seen (so Kafka redelivery and
replays never double count) and returns the customer's whole state, from which
features are derived without a second read.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ClusterError,
    DataError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamseg.errors import StoreRefused, StoreUnavailable
from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.features.cluster import (
    ClusterHashReader,
    ClusterPlacement,
    Durable,
    Placement,
    cluster_sizes,
    connect,
    is_cluster_url,
)
from streamseg.features.fastread import HashReader, refusal
from streamseg.features.keys import Keys
from streamseg.publish.records import CatalogEntry
from streamseg.timeunits import DAY_MS, DAY_S

log = logging.getLogger(__name__)

Status = Literal["applied", "duplicate", "late"]
#: Customers read per round trip when sampling (each chunk's parsing holds the event loop).
SAMPLE_CHUNK = 100
#: The worker-status hash outlives its last writer by this much (workers rewrite it each second).
WORKER_STATUS_TTL_S = DAY_S
#: Segment changes kept per customer unless told (``STREAMSEG_CUSTOMER_HISTORY``'s default)
DEFAULT_HISTORY = 20
#: Redis unreachable (BusyLoadingError, LOADING, is a ConnectionError) or refusing all work
#: for a while -- full (maxmemory), a read-only replica, a cluster in transition or a replica
#: without its master (MasterDownError is a ClusterDownError): an outage to wait out
_OUTAGES = (RedisConnectionError, RedisTimeoutError, OSError,
            OutOfMemoryError, ReadOnlyError, TryAgainError, ClusterDownError,
            ClusterError, SlotNotCoveredError)  # Redis Cluster: redirects or failovers not settled
#: redis-py's cluster client says it reaches no node, or no agreed slot map, only in words
_CLUSTER_OUTAGES = ("Redis Cluster cannot be connected", "All slots are not covered",
                    "startup_nodes could not agree")
#: The same refusals by their error code, for replies redis-py's parser has not classed:
#: MISCONF (a failed snapshot) and BUSY (a long script) have no class, and HashReader
#: hands hiredis' error replies over as plain ResponseErrors
_REFUSAL_CODES = ("LOADING", "OOM", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN",
                  "MISCONF", "BUSY")


def is_outage(exc: BaseException) -> bool:
    """Unreachable or refusing: retry later. Any other error reply is about the request.

    >>> is_outage(ResponseError("BUSY Redis is busy running a script."))
    True
    >>> is_outage(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    False
    >>> is_outage(AuthenticationError("WRONGPASS invalid username-password pair"))
    False
    """
    if isinstance(exc, AuthenticationError):  # a ConnectionError to redis-py, but no retry cures it
        return False
    return isinstance(exc, _OUTAGES) or (
        isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in _REFUSAL_CODES
    ) or (isinstance(exc, RedisClusterException) and str(exc).startswith(_CLUSTER_OUTAGES))


@contextmanager
def unavailable_on_outage(what: str) -> Iterator[None]:
    """Raise :class:`StoreUnavailable` for an outage inside the block; let other errors through.

    ``what`` completes "Redis unavailable while ...".

    >>> with unavailable_on_outage("reading a customer"):
    ...     raise RedisConnectionError("Connection refused")
    Traceback (most recent call last):
    streamseg.errors.StoreUnavailable: Redis unavailable while reading a customer: Connection refused
    >>> with unavailable_on_outage("reading a customer"):
    ...     raise AuthenticationError("WRONGPASS invalid username-password pair")
    Traceback (most recent call last):
    streamseg.errors.StoreRefused: Redis refused streamseg while reading a customer (WRONGPASS invalid username-password pair): check the user and password in STREAMSEG_REDIS_URL and the user's ACL
    """
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as exc:  # OSError: socket errors redis-py let through
        if isinstance(exc, AuthenticationError | NoPermissionError):
            raise StoreRefused(f"Redis refused streamseg while {what} ({exc}): check the user and "
                               "password in STREAMSEG_REDIS_URL and the user's ACL") from exc
        if is_outage(exc):
            raise StoreUnavailable(f"Redis unavailable while {what}: {exc}") from exc
        raise

# Atomic per customer (both keys share the customer's hash tag): read the
# membership and delete, so two concurrent erasures decrement a size only once.
#: Erase a customer and note what went in KEYS[3], merged with what an earlier, unfinished
#: attempt removed (deleted once the audit record is out: see ``forget_done``). Returns the
#: segment removed now (its size is decremented) and, merged, the segment, state and ids removed.
FORGET_LUA = """
local seg = redis.call('HGET', KEYS[1], 'seg')
local had_state = redis.call('DEL', KEYS[1])
local had_seen = redis.call('DEL', KEYS[2])
local had_hist = redis.call('DEL', KEYS[4])
local was = redis.call('HMGET', KEYS[3], 'seg', 'state', 'seen', 'hist')
local any_seg = seg or was[1] or ''
local any_state = math.max(had_state, tonumber(was[2] or 0))
local any_seen = math.max(had_seen, tonumber(was[3] or 0))
local any_hist = math.max(had_hist, tonumber(was[4] or 0))
redis.call('HSET', KEYS[3], 'seg', any_seg, 'state', any_state, 'seen', any_seen, 'hist', any_hist)
redis.call('EXPIRE', KEYS[3], ARGV[1])
return {seg or '', any_seg, any_state, any_seen, any_hist}
"""

#: Membership of one customer, written only while its state exists: a customer
#: erased (by another worker or the CLI) between this batch's feature update and
#: its membership write must not come back as a hash holding only a segment.
#: Write one membership and keep the segment sizes exact from what was stored, not from
#: what the caller believed: two workers may evaluate one customer at once (held-back
#: customers, or clicks and orders on partitions of different workers). Returns -1 when
#: the customer is gone (erased), -2 when it had no segment, else the segment it had.
#: A change of segment (not a re-assignment to the same one, so a redelivered batch adds
#: nothing) is also pushed onto the customer's history list KEYS[3] (ARGV[6] event time ms,
#: ARGV[7] entries kept, 0: none, ARGV[8] cause as JSON), which expires with the state.
MEMBERSHIP_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local old = redis.call('HGET', KEYS[1], 'seg')
redis.call('HSET', KEYS[1], 'seg', ARGV[1], 'seg_dist', ARGV[2], 'seg_version', ARGV[3], 'seg_why', ARGV[4])
if ARGV[5] and ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'val_band', ARGV[5]) end
local new = tonumber(ARGV[1])
local was = old and tonumber(old)
if was ~= new then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  if was then redis.call('HINCRBY', KEYS[2], string.format('%d', was), -1) end
  local keep = tonumber(ARGV[7])
  if keep > 0 then
    local from = was and string.format('%d', was) or 'null'
    redis.call('LPUSH', KEYS[3], '[' .. ARGV[6] .. ',' .. from .. ',' .. ARGV[1] .. ',' .. ARGV[3] .. ',' .. ARGV[8] .. ']')
    redis.call('LTRIM', KEYS[3], 0, keep - 1)
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
  end
end
if not was then return -2 end
return was
"""


@dataclass(frozen=True, slots=True)
class CustomerUpdate:
    """What one batch did to one customer: per-event status and the new state."""

    customer_id: str
    statuses: list[Status]
    state: dict[str, float | str]

    @property
    def changed(self) -> bool:
        return "applied" in self.statuses


@dataclass(frozen=True, slots=True)
class Membership:
    customer_id: str
    segment_id: int
    previous_segment_id: int | None
    distance: float
    model_version: int
    segment_name: str
    reasons: bytes = b"[]"  # JSON list of Reason records: why the customer moved
    risk_band: str = ""  # the churn-risk band published with it ("": none, the stored one stays)
    ts_ms: int = 0  # event time of the evaluation (the history entry's time)
    cause: str | None = None  # the feature that pulled the customer most (first reason)


@dataclass(frozen=True, slots=True)
class MembershipWrite:
    """What :meth:`RedisFeatureStore.write_memberships` found.

    ``erased``: customers whose state was gone, nothing written. ``raced``:
    customers whose stored segment was not the ``previous_segment_id`` the
    caller decided from (another worker wrote in between), with the segment
    that was stored (None: none); their published record needs correcting.
    """

    erased: list[str] = field(default_factory=list)
    raced: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What :meth:`RedisFeatureStore.forget` removed."""

    removed_keys: list[str]
    segment_id: int | None  # the membership removed (its segment size was decremented)


class FeatureStore(Protocol):
    """Where per-customer state lives (Redis in production)."""

    async def apply(self, events: Sequence[Event]) -> dict[str, CustomerUpdate]: ...

    async def write_memberships(self, changes: Sequence[Membership]) -> MembershipWrite: ...

    async def write_catalog(self, entries: Mapping[int, bytes]) -> None: ...

    async def catalog(self) -> dict[int, bytes]: ...

    async def write_value_params(self, raw: bytes) -> None: ...

    async def sample_states(self, limit: int) -> list[dict[str, float | str]]: ...

    async def segment_sizes(self) -> dict[int, int]: ...

    async def hold(self, customer_ids: Sequence[str]) -> None: ...

    async def held(self, limit: int) -> list[str]: ...

    async def held_count(self) -> int: ...

    async def release(self, customer_ids: Sequence[str]) -> None: ...

    async def states(self, customer_ids: Sequence[str]) -> list[dict[str, float | str]]: ...

    async def stale_states(self, before_ms: float, limit: int) -> dict[str, dict[str, float | str]]: ...

    async def mark_scored(self, customer_ids: Sequence[str], at_ms: float) -> None: ...


def compact(event: Event) -> list[object]:
    """The small array form the Lua script reads (see apply_events.lua)."""
    if isinstance(event, TransactionEvent):
        return ["t", event.event_id, event.ts_ms, event.amount, event.discount_amount,
                event.items, 1 if event.refund else 0, list(event.categories)]
    assert isinstance(event, ClickEvent)
    return ["c", event.event_id, event.ts_ms, event.type, event.session_id, event.category]


def group_by_customer(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events per customer, in arrival order."""
    groups: dict[str, list[Event]] = {}
    for ev in events:
        groups.setdefault(ev.customer_id, []).append(ev)
    return groups


def parse_state(flat: Sequence[bytes]) -> dict[str, float | str]:
    """Field/value pairs from the script -> numbers where they are numbers."""
    state: dict[str, float | str] = {}
    for i in range(0, len(flat), 2):
        raw = flat[i + 1]
        try:
            state[flat[i].decode()] = float(raw)  # float() reads the bytes: no decode for numbers
        except ValueError:
            state[flat[i].decode()] = raw.decode()
    return state


class SharedDocuments:
    """The documents workers share through Redis beside the customers: the catalog, the value
    parameters, the kept drift reports and the worker statuses (single keys, low write rate;
    :class:`RedisFeatureStore` has these methods)."""

    client: Any
    keys: Keys

    async def write_catalog(self, entries: Mapping[int, bytes]) -> None:
        """Replace catalog entries (segment id -> CatalogEntry JSON)."""
        if not entries:
            return
        with unavailable_on_outage("writing the catalog"):
            await self.client.hset(self.keys.catalog(), mapping={str(k): v for k, v in entries.items()})

    async def catalog(self) -> dict[int, bytes]:
        with unavailable_on_outage("reading the catalog"):
            raw = await self.client.hgetall(self.keys.catalog())
        return {int(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}

    async def write_value_params(self, raw: bytes) -> None:
        """Keep the customer-value parameters (JSON) for readers outside the workers."""
        with unavailable_on_outage("writing the value parameters"):
            await self.client.set(self.keys.value_params(), raw)

    async def value_params(self) -> bytes | None:
        """The customer-value parameters the leader last wrote (None: none fitted yet)."""
        with unavailable_on_outage("reading the value parameters"):
            raw = await self.client.get(self.keys.value_params())
        return raw if raw is None or isinstance(raw, bytes) else str(raw).encode()

    async def keep_drift_reports(self, reports: Sequence[tuple[str, bytes]], keep: int) -> None:
        """Push (window, report JSON) onto each window's list, keeping its newest ``keep``."""
        if not reports:
            return
        pipe = self.client.pipeline(transaction=False)
        for window in dict.fromkeys(w for w, _ in reports):
            key = self.keys.drift(window)
            pipe.lpush(key, *[raw for w, raw in reports if w == window])
            pipe.ltrim(key, 0, keep - 1)
        with unavailable_on_outage("keeping drift reports"):
            await pipe.execute()

    async def drift_reports(self, windows: Sequence[str]) -> dict[str, list[bytes]]:
        """Each window's kept drift reports (JSON), newest first (see :meth:`keep_drift_reports`)."""
        pipe = self.client.pipeline(transaction=False)
        for window in windows:
            pipe.lrange(self.keys.drift(window), 0, -1)
        with unavailable_on_outage("reading drift reports"):
            replies = await pipe.execute()
        return {w: [r if isinstance(r, bytes) else str(r).encode() for r in reply]
                for w, reply in zip(windows, replies, strict=True)}

    async def write_worker_status(self, worker: str, status: Mapping[str, float]) -> None:
        """This worker's clock and model version, for readers outside the workers."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.workers(), worker, orjson.dumps(status))
        pipe.expire(self.keys.workers(), WORKER_STATUS_TTL_S)
        with unavailable_on_outage("writing the worker status"):
            await pipe.execute()

    async def worker_statuses(self) -> dict[str, dict[str, float]]:
        """Every worker's last status (see :meth:`write_worker_status`); unreadable ones left out."""
        out = {}
        with unavailable_on_outage("reading worker statuses"):
            statuses = await self.client.hgetall(self.keys.workers())
        for worker, raw in statuses.items():
            try:
                status = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(status, dict):
                out[worker.decode() if isinstance(worker, bytes) else worker] = status
        return out


class RedisFeatureStore(SharedDocuments):
    """Async Redis/Valkey implementation of :class:`FeatureStore`."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        keys: Keys,
        *,
        dedup_horizon_days: float,
        retention_days: float,
        halflife_days: float = 30.0,
        hashes: HashReader | ClusterHashReader | None = None,
        placement: Placement | None = None,
        wait_replicas: int = 0,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        self.client = client
        self.placement = placement or Placement(keys)  # where the keys every worker writes live
        self.durable = Durable(client, wait_replicas)  # batch writes wait for replicas (cluster doc)
        self.hashes = hashes  # the lean path for HGETALL-heavy reads (None: through redis-py)
        self.keys = keys
        self.horizon_ms = int(dedup_horizon_days * DAY_MS)
        self.ttl_s = max(1, int(retention_days * DAY_S))
        self.halflife_ms = halflife_days * DAY_MS
        self.history_kept = history  # segment changes kept per customer (0: none)
        self._script = resources.files("streamseg.features").joinpath("apply_events.lua").read_text()
        self._sha: str | None = None
        #: the batch writes' lean path (:func:`_lean_apply`): one node, no replicas to wait for
        self.lean_writes = hashes if isinstance(hashes, HashReader) and not wait_replicas else None
        self._forget = client.register_script(FORGET_LUA)
        self._membership = client.register_script(MEMBERSHIP_LUA)

    @classmethod
    def from_url(cls, url: str, keys: Keys, *, wait_replicas: int = 0, **kw: Any) -> RedisFeatureStore:
        """A store on a single Redis (``redis://``, ``rediss://``, ``unix://``) or a Redis
        Cluster (``redis+cluster://``, see :mod:`streamseg.features.cluster`)."""
        if is_cluster_url(url):
            cluster = connect(url, socket_timeout=5, socket_connect_timeout=2)
            lean = None if url.startswith("rediss") else ClusterHashReader(cluster, url)
            return cls(cluster, keys, hashes=lean, placement=ClusterPlacement(keys),
                       wait_replicas=wait_replicas, **kw)
        client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        hashes = None if url.startswith("rediss://") else HashReader(url)  # no TLS in the lean path
        return cls(client, keys, hashes=hashes, wait_replicas=wait_replicas, **kw)

    async def _load(self) -> str:
        self._sha = str(await self.client.script_load(self._script))
        return self._sha

    async def apply(self, events: Sequence[Event]) -> dict[str, CustomerUpdate]:
        """Apply a batch of events: one pipelined round trip for all customers."""
        groups = group_by_customer(events)
        if not groups:
            return {}
        with unavailable_on_outage("applying events"):
            sha = self._sha or await self._load()
            try:
                replies = await self._run(sha, groups)
            except NoScriptError:  # Redis restarted or flushed its script cache
                replies = await self._run(await self._load(), groups)
        return {cid: _update(cid, reply) for cid, reply in zip(groups, replies, strict=True)}

    async def _run(self, sha: str, groups: Mapping[str, list[Event]]) -> list[list[bytes]]:
        if self.lean_writes is not None:
            return await _lean_apply(self, self.lean_writes, sha, groups)
        pipe = self.client.pipeline(transaction=False)
        for cid, evs in groups.items():
            payload = orjson.dumps([compact(e) for e in evs])
            pipe.execute_command(  # not pipe.evalsha: redis-py's cluster pipeline blocks that name
                "EVALSHA", sha, 2, self.keys.state(cid), self.keys.seen(cid), payload,
                self.horizon_ms, self.ttl_s, self.halflife_ms)
        # the sweep's index; separate commands (other slots in Redis Cluster), same round trip
        for key, cids in self.placement.by(self.placement.scored, groups).items():
            pipe.zadd(key, {cid: max(e.ts_ms for e in groups[cid]) for cid in cids}, gt=True)
        replies = await self.durable.execute(pipe, [self.keys.state(cid) for cid in groups])
        for r in replies:
            if isinstance(r, Exception):  # NoScriptError too: the caller loads the script
                raise r
        return replies[: len(groups)]

    async def write_memberships(self, changes: Sequence[Membership]) -> MembershipWrite:
        """Store current membership and keep segment sizes exact; one round trip.

        Nothing is written for customers erased meanwhile; customers another
        writer moved since the caller read them are reported (see
        :class:`MembershipWrite`).
        """
        if not changes:
            return MembershipWrite()
        calls = [([self.keys.state(m.customer_id), self.placement.sizes(m.customer_id),
                   self.keys.history(m.customer_id)],
                  [m.segment_id, repr(m.distance), m.model_version, m.reasons, m.risk_band,
                   m.ts_ms, self.history_kept, orjson.dumps(m.cause)])
                 for m in changes]
        with unavailable_on_outage("writing memberships"):
            written = await (self.durable.scripted(self._membership, calls) if self.lean_writes is None
                             else _lean_scripted(self.client, self.lean_writes, self._membership, calls))
        out = MembershipWrite()
        for m, stored in zip(changes, written, strict=True):
            was = None if stored == -2 else int(stored)
            if stored == -1:
                out.erased.append(m.customer_id)
            elif was != m.previous_segment_id:
                out.raced[m.customer_id] = was
        return out

    async def forget(self, customer_id: str) -> Forgotten:
        """Erase a customer: state, membership, history and dedup entries; keep segment sizes true.

        What was removed is remembered (merged over attempts) until :meth:`forget_done`,
        so an erasure retried after a failed publish still reports it.
        """
        state_key, seen_key = self.keys.state(customer_id), self.keys.seen(customer_id)
        hist_key = self.keys.history(customer_id)
        with unavailable_on_outage("erasing a customer"):
            seg_now, seg, had_state, had_seen, had_hist = await self._forget(
                keys=[state_key, seen_key, self.keys.erasing(customer_id), hist_key],
                args=[self.ttl_s])
            pipe = self.client.pipeline(transaction=False)
            pipe.zrem(self.placement.scored(customer_id), customer_id)  # the re-scoring index names
            pipe.srem(self.placement.held(customer_id), customer_id)  # the customer, and so may held
            if seg_now:
                pipe.hincrby(self.placement.sizes(customer_id), str(int(seg_now)), -1)
            await pipe.execute()
        removed = [k for k, n in ((state_key, had_state), (seen_key, had_seen),
                                  (hist_key, had_hist)) if int(n)]
        return Forgotten(removed, int(seg) if seg else None)

    async def forget_done(self, customer_id: str) -> None:
        """The erasure's audit record is published: forget what it removed too."""
        with unavailable_on_outage("finishing an erasure"):
            await self.client.delete(self.keys.erasing(customer_id))

    async def segments(self) -> tuple[dict[int, CatalogEntry], dict[int, int]]:
        """The catalog (as the engine last wrote it) and live segment sizes; one round trip."""
        if isinstance(self.client, RedisCluster):
            with unavailable_on_outage("reading the catalog"):
                raw_catalog = await self.client.hgetall(self.keys.catalog())
            return _catalog(raw_catalog), await self.segment_sizes()  # type: ignore[arg-type]
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.catalog())
        pipe.hgetall(self.keys.segment_sizes())
        with unavailable_on_outage("reading the catalog"):
            raw_catalog, raw_sizes = await pipe.execute()
        return _catalog(raw_catalog), {int(k): int(v) for k, v in raw_sizes.items()}

    async def sample_states(self, limit: int) -> list[dict[str, float | str]]:
        """Up to ``limit`` customers' states (a sample when there are more), in key order.

        SCAN finds them in an order that depends on every key in the database (other prefixes
        too) and on how far Redis has rehashed its table; the fits that read the sample seed
        their choices by row, so they get the rows in the order of the customers' keys: the same
        customers give the same model, whatever else the database holds.
        """
        out: list[tuple[bytes, dict[str, float | str]]] = []
        scan = self.client.scan_iter(match=self.keys.customer_pattern(), count=1000)
        with unavailable_on_outage("sampling customers"):
            # small chunks: the caller's event loop runs batches between them
            async for batch in _chunks(scan, SAMPLE_CHUNK):
                batch = batch[: limit - len(out)]
                for key, flat in zip(batch, await self._hgetall(batch), strict=True):
                    if flat:
                        out.append((key if isinstance(key, bytes) else str(key).encode(),
                                    parse_state(flat)))
                if len(out) >= limit:
                    break
        out.sort(key=lambda kv: kv[0])
        return [state for _, state in out]

    async def _hgetall(self, keys: Sequence[bytes]) -> list[list[bytes]]:
        """Flat field/value lists of many hashes, in one pipelined round trip."""
        with unavailable_on_outage("reading customers"):
            if self.hashes is not None:
                return await self.hashes.hgetall(keys)
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            replies = await pipe.execute()
        return [[x for kv in raw.items() for x in kv] for raw in replies]

    async def stale_states(self, before_ms: float, limit: int) -> dict[str, dict[str, float | str]]:
        """Up to ``limit`` customers last evaluated before ``before_ms`` (oldest first), with state.

        Customers whose state has expired (retention) leave the index here.
        """
        with unavailable_on_outage("reading stale customers"):
            cids = await self.placement.oldest(self.client, before_ms, limit)
            if not cids:
                return {}
            flats = await self._hgetall([self.keys.state(cid).encode() for cid in cids])
            gone = [cid for cid, flat in zip(cids, flats, strict=True) if not flat]
            if gone:
                await self.placement.grouped(self.client, "ZREM", self.placement.scored, gone)
        return {cid: parse_state(flat) for cid, flat in zip(cids, flats, strict=True) if flat}

    async def mark_scored(self, customer_ids: Sequence[str], at_ms: float) -> None:
        """Record that these customers were evaluated as of ``at_ms`` (never moves back)."""
        if not customer_ids:
            return
        with unavailable_on_outage("marking customers scored"):
            pipe = self.client.pipeline(transaction=False)
            for key, cids in self.placement.by(self.placement.scored, customer_ids).items():
                pipe.zadd(key, dict.fromkeys(cids, at_ms), gt=True)
            await pipe.execute()

    async def segment_sizes(self) -> dict[int, int]:
        with unavailable_on_outage("reading segment sizes"):
            if isinstance(self.client, RedisCluster):  # per-slot counters, summed
                return await cluster_sizes(self.client, self.keys)
            raw = await self.client.hgetall(self.keys.segment_sizes())
        return {int(k): int(v) for k, v in raw.items()}

    async def state(self, customer_id: str) -> dict[str, float | str]:
        if self.hashes is not None:
            return parse_state((await self._hgetall([self.keys.state(customer_id).encode()]))[0])
        with unavailable_on_outage("reading a customer"):
            raw = await self.client.hgetall(self.keys.state(customer_id))
        return parse_state([x if isinstance(x, bytes) else x.encode() for kv in raw.items() for x in kv])

    async def hold(self, customer_ids: Sequence[str]) -> None:
        """Remember customers that still need a first assignment (see ``Keys.held``)."""
        if customer_ids:
            with unavailable_on_outage("holding customers"):
                await self.placement.grouped(self.client, "SADD", self.placement.held, customer_ids)

    async def held(self, limit: int) -> list[str]:
        with unavailable_on_outage("reading held customers"):
            pipe = self.client.pipeline(transaction=False)
            for key in self.placement.all_held():
                pipe.srandmember(key, limit)
            raw = [c for part in await pipe.execute() for c in part or []][:limit]
        return [c.decode() if isinstance(c, bytes) else str(c) for c in raw]

    async def held_count(self) -> int:
        """Customers in the held set: before the first model, every distinct customer seen."""
        with unavailable_on_outage("counting held customers"):
            pipe = self.client.pipeline(transaction=False)
            for key in self.placement.all_held():
                pipe.scard(key)
            return sum(int(n) for n in await pipe.execute())

    async def release(self, customer_ids: Sequence[str]) -> None:
        if customer_ids:
            with unavailable_on_outage("releasing customers"):
                await self.placement.grouped(self.client, "SREM", self.placement.held, customer_ids)

    async def states(self, customer_ids: Sequence[str]) -> list[dict[str, float | str]]:
        """Several customers' states in one pipelined round trip ({} for an unknown customer)."""
        if self.hashes is None and len(customer_ids) == 1:  # redis-py: a plain command is cheaper
            return [await self.state(customer_ids[0])]
        keys = [self.keys.state(cid).encode() for cid in customer_ids]
        return [parse_state(flat) for flat in await self._hgetall(keys)]

    async def lookups(self, customer_ids: Sequence[str]) -> list[tuple[dict[str, float | str], list[bytes]]]:
        """Several customers' states with their histories, in one pipelined round trip: what a
        customer lookup reads (``({}, [])`` for an unknown customer).

        A history is the customer's stored segment changes, newest first, as the membership
        script wrote them (see ``Keys.history``; [] with ``STREAMSEG_CUSTOMER_HISTORY=0``).
        """
        requests = [r for cid in customer_ids for r in (
            (b"HGETALL", self.keys.state(cid).encode()),
            (b"LRANGE", self.keys.history(cid).encode(), b"0", b"-1"))]
        with unavailable_on_outage("reading customers"):
            if self.hashes is not None:
                replies = await self.hashes.commands(requests)
            else:
                pipe = self.client.pipeline(transaction=False)
                for name, key, *args in requests:
                    pipe.execute_command(name.decode(), key, *args)
                replies = [[x for kv in r.items() for x in kv] if isinstance(r, dict) else r
                           for r in await pipe.execute()]
        return [(parse_state(flat), list(hist)) for flat, hist in zip(replies[0::2], replies[1::2],
                                                                       strict=True)]

    async def ping(self) -> bool:
        """Whether Redis answers and takes our work (False during an outage, see the module
        doc, or while it refuses our credentials)."""
        try:
            with unavailable_on_outage("pinging"):
                return bool(await self.client.ping())
        except (StoreUnavailable, StoreRefused):
            return False

    async def close(self) -> None:
        if self.hashes is not None:
            await self.hashes.close()
        await self.client.aclose()


def _catalog(raw: Mapping[bytes, bytes]) -> dict[int, CatalogEntry]:
    """Parse the catalog hash; an entry that does not parse is logged and left out."""
    out: dict[int, CatalogEntry] = {}
    for key, value in raw.items():
        try:
            entry = CatalogEntry.model_validate_json(value)
        except ValueError as exc:
            log.warning("catalog entry %r does not parse, left out: %s", key, exc)
            continue
        out[entry.segment_id] = entry
    return out


async def _lean_apply(store: RedisFeatureStore, conn: HashReader, sha: str,
                      groups: Mapping[str, list[Event]]) -> list[list[bytes]]:
    """:meth:`RedisFeatureStore._run`'s commands, packed here and sent on the hiredis connection.

    The same commands and replies as through redis-py, whose pipeline cost the
    worker ~1-2 us of CPU per enveloped event (encoding every argument, packing,
    reply callbacks; docs/performance.md#leaner-hot-path-session-11).
    """
    keys, fixed = store.keys, (b"%d" % store.horizon_ms, b"%d" % store.ttl_s,
                               repr(store.halflife_ms).encode())
    head = (b"EVALSHA", sha.encode(), b"2")
    requests: list[tuple[bytes, ...]] = [
        (*head, keys.state(cid).encode(), keys.seen(cid).encode(),
         orjson.dumps([compact(e) for e in evs]), *fixed) for cid, evs in groups.items()]
    for key, cids in store.placement.by(store.placement.scored, groups).items():  # the sweep's index
        scores = [b"%d" % max(e.ts_ms for e in groups[cid]) for cid in cids]
        requests.append((b"ZADD", key.encode(), b"GT",
                         *(x for s, cid in zip(scores, cids, strict=True) for x in (s, cid.encode()))))
    return (await _lean(conn, requests))[: len(groups)]


async def _lean_scripted(client: aioredis.Redis | RedisCluster, conn: HashReader, script: AsyncScript,
                         calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
    """:meth:`Durable.scripted` (no replicas to wait for) on the hiredis connection."""
    requests = [(b"EVALSHA", script.sha.encode(), b"%d" % len(keys),
                 *(k.encode() for k in keys), *map(_arg, args)) for keys, args in calls]
    try:
        return await _lean(conn, requests)
    except NoScriptError:  # a restarted or flushed server: load it, once
        await client.script_load(script.script)
        return await _lean(conn, requests)


def _arg(value: object) -> bytes:
    """One command argument as redis-py's encoder writes it (bytes, text, numbers)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    raise DataError(f"invalid argument type {type(value).__name__}: {value!r}")


async def _lean(conn: HashReader, requests: Sequence[Sequence[bytes]]) -> list[Any]:
    """``conn.commands``, its error replies classed as redis-py's: NoScriptError (load the
    script again), a refusal (NOPERM, NOAUTH), else the ResponseError as it is."""
    try:
        return await conn.commands(requests)
    except ResponseError as exc:
        if str(exc).startswith("NOSCRIPT"):
            raise NoScriptError(str(exc)) from exc
        refused = refusal(exc)
        if refused is not exc:
            raise refused from exc
        raise


_STATUS_CHAR: dict[int, Status] = {ord("1"): "applied", ord("0"): "duplicate", ord("L"): "late"}


def _update(cid: str, reply: list[bytes]) -> CustomerUpdate:
    statuses, packed = reply
    state: dict[str, float | str] = {}
    for line in packed.decode().split("\n"):
        key, _, raw = line.partition("\t")
        try:
            state[key] = float(raw)
        except ValueError:
            state[key] = raw
    return CustomerUpdate(cid, [_STATUS_CHAR[c] for c in statuses], state)




async def _chunks(it: AsyncIterator[bytes], n: int) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch
