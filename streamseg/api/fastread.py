"""Customer state reads for the API's lookups, on one connection with hiredis and nothing else.

A lookup is one ``HGETALL``. Through redis-py's asyncio client that read costs
about 110 us of CPU (connection checkout and release, observability hooks,
timeouts, reply callbacks that build a dict the store flattens again); on a
plain asyncio protocol that feeds hiredis it costs about 26 us, and the API
server spends the difference on every request
(``load_tests/lookup_bench.py``). :class:`StateReader` does only that: it
pipelines ``HGETALL`` for a batch of customers on one connection (reconnecting
after any failure) and returns the same parsed states as
:meth:`streamseg.features.store.RedisFeatureStore.states`. Its errors are
redis-py's, so callers handle both alike. TLS URLs (``rediss://``) are not
handled here: :func:`state_reader` then returns the store's own read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore, parse_state

States = Callable[[Sequence[str]], Awaitable[list[dict[str, float | str]]]]


def pack(*args: bytes) -> bytes:
    """One command in RESP.

    >>> pack(b"HGETALL", b"k")
    b'*2\\r\\n$7\\r\\nHGETALL\\r\\n$1\\r\\nk\\r\\n'
    """
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """Replies in order to the futures waiting for them; all fail if the connection goes."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                fut = self.waiting.popleft()
                if not fut.done():
                    fut.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage or an unasked reply
            self._fail(RedisConnectionError(f"unreadable reply from Redis: {exc!r}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def _fail(self, exc: Exception) -> None:
        self.lost = exc
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)


class StateReader:
    """``await reader.states(ids)``: each customer's parsed state hash ({} if unknown)."""

    def __init__(self, url: str, keys: Keys, *, timeout: float = 5.0) -> None:
        opts = parse_url(url)
        self.path: str | None = opts.get("path") if opts.get("connection_class") is \
            UnixDomainSocketConnection else None
        self.host = opts.get("host", "localhost")
        self.port = int(opts.get("port", 6379))
        self.hello = [pack(b"AUTH", *(str(opts[k]).encode() for k in ("username", "password")
                                      if opts.get(k)))] if opts.get("password") else []
        if opts.get("db"):
            self.hello.append(pack(b"SELECT", str(opts["db"]).encode()))
        self.keys = keys
        self.timeout = timeout
        self._conn: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def states(self, customer_ids: Sequence[str]) -> list[dict[str, float | str]]:
        conn = await self._connection()
        request = b"".join(pack(b"HGETALL", self.keys.state(cid).encode()) for cid in customer_ids)
        replies = await self._send(conn, request, len(customer_ids))
        return [parse_state(flat) for flat in replies]

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None

    async def _connection(self) -> _Protocol:
        conn = self._conn
        if conn is not None and conn.lost is None:
            return conn
        async with self._connecting:
            if self._conn is not None and self._conn.lost is None:
                return self._conn
            loop = asyncio.get_running_loop()
            try:
                if self.path:
                    connect = loop.create_unix_connection(_Protocol, self.path)
                else:
                    connect = loop.create_connection(_Protocol, self.host, self.port)
                _, fresh = await asyncio.wait_for(connect, self.timeout)
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis for lookups: {exc!r}") from exc
            if self.hello:
                await self._send(fresh, b"".join(self.hello), len(self.hello))
            self._conn = fresh
            return fresh

    async def _send(self, conn: _Protocol, request: bytes, replies: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(replies)]
        conn.waiting.extend(futures)
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            out = await asyncio.wait_for(asyncio.gather(*futures), self.timeout)
        except TimeoutError:
            # replies still due would answer the next request: this connection is done
            conn._fail(RedisTimeoutError(f"Redis did not answer within {self.timeout} s"))
            with contextlib.suppress(Exception):
                conn.transport.close()
            raise RedisTimeoutError(f"Redis did not answer a lookup within {self.timeout} s") from None
        for reply in out:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
        return out


def state_reader(url: str, store: RedisFeatureStore) -> tuple[States, Callable[[], Awaitable[None]]]:
    """The lookups' read (and how to close it): a :class:`StateReader` unless the URL needs TLS."""
    if url.startswith("rediss://"):
        return store.states, _nothing
    reader = StateReader(url, store.keys)
    return reader.states, reader.close


async def _nothing() -> None:
    return None
