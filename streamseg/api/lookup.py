"""Response bodies for customer and segment lookups, built from what the engine stored.

Pure functions over the customer's state hash and the catalog, so they are
tested without a server.

>>> state = {"first_ts": 0.0, "last_ts": 864e5, "seg": 2.0, "seg_dist": 0.5, "seg_version": 3.0,
...          "seg_why": '[{"feature": "monetary_30d", "value": 90.0, "previous_mean": null, "new_mean": 80.0}]'}
>>> body = customer_body("c1", state, names={2: "Bargain hunters"}, now_ms=2 * 864e5)
>>> body["segment_id"], body["segment_name"], body["distance"], body["model_version"]
(2, 'Bargain hunters', 0.5, 3)
>>> body["reasons"][0]["feature"], body["features"]["days_since_last_activity"]
('monetary_30d', 1.0)
>>> history_body([b'[86400000,1,2,3,"monetary_30d"]', b'[0,null,1,3,null]'], {2: "Bargain hunters"})[0]
{'ts_ms': 86400000, 'from_segment': 1, 'to_segment': 2, 'model_version': 3, 'cause': 'monetary_30d', 'from_segment_name': 'Segment 1', 'to_segment_name': 'Bargain hunters'}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from streamseg.events.models import iso
from streamseg.features.registry import State, derive
from streamseg.publish.records import CatalogEntry
from streamseg.value.scorer import ValueScorer

if TYPE_CHECKING:
    from streamseg.features.store import RedisFeatureStore
    from streamseg.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class _ReasonBody(TypedDict):
    """:class:`Reason` as the plain dict a response holds (validated straight from JSON)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    feature: str
    value: float
    previous_mean: float | None
    new_mean: float


#: parses and checks ``seg_why`` in one step, without building models only to dump them
_REASONS = TypeAdapter(list[_ReasonBody])


def customer_body(customer_id: str, state: State, *, names: Mapping[int, str],
                  now_ms: float, warming_up: str | None = None,
                  value: ValueScorer | None = None, history: Sequence[bytes] = ()) -> dict[str, Any]:
    """``GET /v1/customers/{id}``: membership, why, features, value at ``now_ms`` and the
    latest segment changes.

    ``warming_up``: the progress towards the first model (see
    :func:`streamseg.segmenting.warmup.warming_up`), said while the customer has no segment.
    ``value``: the customer-value model (its ``value`` is null until one was fitted).
    ``history``: the stored history entries (:meth:`RedisFeatureStore.history`), newest first.
    """
    seg = _int(state.get("seg"))
    last = state.get("last_ts")
    return {
        "customer_id": customer_id,
        "segment_id": seg,
        "segment_name": None if seg is None else _name(names, seg),
        "distance": _float(state.get("seg_dist")),
        "model_version": _int(state.get("seg_version")),
        "reasons": reasons(state),
        "features": derive(state, now_ms),
        "features_as_of": iso(int(now_ms)),
        "last_event_ts": iso(int(last)) if isinstance(last, float) else None,
        "warming_up": warming_up if seg is None else None,
        "value": value.body(state, now_ms) if value is not None else None,
        "history": history_body(history, names),
    }


def history_body(entries: Sequence[bytes], names: Mapping[int, str]) -> list[dict[str, Any]]:
    """Stored history entries (``[ts_ms, from|null, to, model_version, cause|null]``, see
    ``Keys.history``) as response objects, in the stored order (newest first); an entry that
    does not parse is logged and left out."""
    try:  # one parse for all: the entries are the membership script's own
        return [_history_entry(names, *row) for row in orjson.loads(b"[" + b",".join(entries) + b"]")]
    except (orjson.JSONDecodeError, TypeError):
        pass
    out = []
    for raw in entries:
        try:
            out.append(_history_entry(names, *orjson.loads(raw)))
        except (orjson.JSONDecodeError, TypeError) as exc:
            log.warning("unreadable history entry %r left out: %s", raw[:80], exc)
    return out


def _history_entry(names: Mapping[int, str], ts: object, was: object, to: object,
                   version: object, cause: object) -> dict[str, Any]:
    """One entry's response object; TypeError for an entry the script would not write."""
    if not (type(ts) is int and type(to) is int and type(version) is int
            and (was is None or type(was) is int) and (cause is None or type(cause) is str)):
        raise TypeError(f"not [int, int|null, int, int, str|null]: {[ts, was, to, version, cause]}")
    return {"ts_ms": ts, "from_segment": was, "to_segment": to, "model_version": version,
            "cause": cause, "from_segment_name": None if was is None else _name(names, was),
            "to_segment_name": _name(names, to)}


def _name(names: Mapping[int, str], segment: int) -> str:
    return names.get(segment, f"Segment {segment}")


async def lookup_stored(reader: RedisFeatureStore, settings: Settings,
                        customer_id: str) -> dict[str, Any] | None:
    """What ``streamseg api`` answers for ``GET /v1/customers/{id}`` (None: no such customer),
    read straight from Redis: segment names from the catalog, the clock from the workers'
    statuses. ``streamseg inspect`` prints it."""
    from streamseg.api.server import StoredModelView

    ((state, history),) = await reader.lookups([customer_id])
    if not state:
        return None
    model = StoredModelView(reader, settings)
    await model.refresh()
    names = catalog_names(await reader.catalog())
    return customer_body(customer_id, state, names=names, now_ms=model.now_ms(),
                         warming_up=model.warming_up(), value=model.value(), history=history)


def reasons(state: State) -> list[dict[str, Any]]:
    """The stored reasons of the current membership (``seg_why``), or [] if none or unreadable."""
    raw = state.get("seg_why")
    if not isinstance(raw, str):
        return []
    try:
        return _REASONS.validate_json(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        log.warning("unreadable seg_why left out: %s", exc)
        return []


def segment_body(entry: CatalogEntry, size: int) -> dict[str, Any]:
    """One catalog entry with the segment's live size (``profile.size`` is as profiled)."""
    return {**entry.model_dump(), "size": size}


def segments_body(catalog: Mapping[int, CatalogEntry], sizes: Mapping[int, int],
                  model_version: int) -> dict[str, Any]:
    return {"model_version": model_version,
            "segments": [segment_body(catalog[sid], sizes.get(sid, 0)) for sid in sorted(catalog)]}


def _int(v: object) -> int | None:
    return int(v) if isinstance(v, float) else None


def _float(v: object) -> float | None:
    return v if isinstance(v, float) else None


class CatalogNames:
    """Segment names from the catalog, re-read in the background about every ``max_age`` s.

    A customer lookup needs only the name of one segment. The first call waits
    for the catalog; later calls answer from the names in hand at once and, when
    those are older than ``max_age``, start a single re-read behind the scenes,
    so reading and parsing the catalog never sits in front of a lookup. Names
    may lag a catalog change by about ``max_age``; a failed re-read keeps the
    names in hand and a later call tries again.
    """

    def __init__(self, load: Callable[[], Awaitable[Mapping[int, str]]],
                 fallback: Callable[[], Mapping[int, str]], max_age: float = 1.0) -> None:
        self._load = load
        self._fallback = fallback  # the local engine's names, until the catalog has the segment
        self.max_age = max_age
        self._names: dict[int, str] = {}
        self._loaded_at: float | None = None
        self._refresh: asyncio.Task[None] | None = None

    async def get(self) -> Mapping[int, str]:
        if self._loaded_at is None:
            await self._reload()  # nothing in hand yet: errors reach the caller
        elif time.monotonic() - self._loaded_at > self.max_age and (
                self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.ensure_future(self._reload_quietly())
        fallback = self._fallback()
        return {**fallback, **self._names} if fallback else self._names

    async def _reload(self) -> None:
        names = dict(await self._load())
        self._names, self._loaded_at = names, time.monotonic()

    async def _reload_quietly(self) -> None:
        try:
            await self._reload()
        except Exception as exc:  # Redis away: keep the names in hand, retry on a later call
            log.debug("catalog names not re-read: %r", exc)

    async def close(self) -> None:
        task, self._refresh = self._refresh, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def catalog_names(raw: Mapping[int, bytes]) -> dict[int, str]:
    """Segment id -> name from the stored catalog (entries without a readable name are left out).

    >>> catalog_names({1: b'{"segment_id": 1, "name": "Loyal big spenders"}', 2: b"{"})
    {1: 'Loyal big spenders'}
    """
    out: dict[int, str] = {}
    for sid, value in raw.items():
        try:
            name = orjson.loads(value).get("name")
        except (orjson.JSONDecodeError, AttributeError):
            name = None
        if isinstance(name, str):
            out[sid] = name
        else:
            log.debug("catalog entry %d has no readable name, left out", sid)
    return out


class CoalescedReads(Generic[T]):
    """What concurrent lookups read (a customer's state and history), read together in one
    pipelined round trip.

    While one read is in flight, lookups that arrive wait and go in the next
    read, so under load each Redis round trip serves many requests (a
    pipelined HGETALL costs a fraction of a lone one) and throughput grows
    with the load instead of collapsing; a lone lookup is read at once.
    """

    def __init__(self, read: Callable[[Sequence[str]], Awaitable[list[T]]]) -> None:
        self._read = read
        self._waiting: dict[str, list[asyncio.Future[T]]] = {}
        self._busy = False
        self._task: asyncio.Future[None] | None = None

    async def get(self, customer_id: str) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(customer_id, []).append(fut)
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().call_soon(self._start)  # lookups of this tick join in
        return await fut

    def _start(self) -> None:
        batch, self._waiting = self._waiting, {}
        self._task = asyncio.ensure_future(self._serve(batch))

    async def _serve(self, batch: dict[str, list[asyncio.Future[T]]]) -> None:
        try:
            states = await self._read(list(batch))
        except Exception as exc:  # every waiter gets the error (the view answers 503)
            for futs in batch.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
        else:
            for futs, state in zip(batch.values(), states, strict=True):
                for f in futs:
                    if not f.done():
                        f.set_result(state)
        if self._waiting:
            self._start()
        else:
            self._busy = False
