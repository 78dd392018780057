"""Hash reads on one connection with hiredis and nothing else: the store's hot reads.

An API lookup is one ``HGETALL``, the leader's catalog refresh thousands.
Through redis-py's asyncio client one ``HGETALL`` costs about 110 us of CPU
(connection checkout and release, observability hooks, timeouts, reply
callbacks that build a dict the store flattens again); on a plain asyncio
protocol that feeds hiredis it costs about 26 us
(``load_tests/lookup_bench.py``), and a refresh that read 3,500 customers
through redis-py pipelines held the worker's event loop for ~300 ms.
:class:`HashReader` does only that: it pipelines ``HGETALL`` for many keys on
one connection (reconnecting after any failure) and returns hiredis' flat
field/value lists. On one node without replicas to wait for, the store's batch
writes (one ``EVALSHA`` per customer of a batch) take it too. Its errors are redis-py's exception classes (an error reply
is a plain ``ResponseError`` carrying its code), and only the store calls it:
:mod:`streamseg.features.store` turns outages into ``StoreUnavailable`` for both
paths alike, so nothing here is caught anywhere else. TLS URLs (``rediss://``) are not handled here; the store then reads through
redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def pack(*args: bytes) -> bytes:
    """One command in RESP.

    >>> pack(b"HGETALL", b"k")
    b'*2\\r\\n$7\\r\\nHGETALL\\r\\n$1\\r\\nk\\r\\n'
    """
    # C, twice as fast as formatting here (its stub types a 1-tuple)
    return hiredis.pack_command(args)  # type: ignore[arg-type,no-any-return]


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


class HashReader:
    """``await reader.hgetall(keys)``: each hash as a flat [field, value, ...] list ([] if none).

    One connection, used from one event loop (the one it was first used on).
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        opts = parse_url(url)
        self.path: str | None = opts.get("path") if opts.get("connection_class") is \
            UnixDomainSocketConnection else None
        self.host = opts.get("host", "localhost")
        self.port = int(opts.get("port", 6379))
        self.hello = [pack(b"AUTH", *(str(opts[k]).encode() for k in ("username", "password")
                                      if opts.get(k)))] if opts.get("password") else []
        if opts.get("db"):
            self.hello.append(pack(b"SELECT", str(opts["db"]).encode()))
        self.timeout = timeout
        self._conn: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def hgetall(self, keys: Sequence[bytes]) -> list[list[bytes]]:
        return await self.commands([(b"HGETALL", k) for k in keys])

    async def commands(self, requests: Sequence[Sequence[bytes]]) -> list[Any]:
        """Commands (``(name, key, *args)``, e.g. an ``HGETALL`` and an ``LRANGE`` for each
        customer), pipelined in one write; hiredis' replies in request order. Writes only
        where a retry after a timeout is harmless (the store's idempotent batch writes)."""
        if not requests:
            return []
        conn = await self._connection()
        return await self._send(conn, b"".join([pack(*r) for r in requests]), len(requests))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None and self._loop is asyncio.get_running_loop():
            conn.transport.close()

    async def _connection(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or the store moved to another loop (tests do)
            self._loop, self._conn, self._connecting = loop, None, asyncio.Lock()
        conn = self._conn
        if conn is not None and conn.lost is None:
            return conn
        async with self._connecting:
            if self._conn is not None and self._conn.lost is None:
                return self._conn
            try:
                if self.path:
                    connect = loop.create_unix_connection(_Protocol, self.path)
                else:
                    connect = loop.create_connection(_Protocol, self.host, self.port)
                _, fresh = await asyncio.wait_for(connect, self.timeout)
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from exc
            if self.hello:
                try:
                    await self._send(fresh, b"".join(self.hello), len(self.hello))
                except BaseException as exc:  # refused credentials or database: nothing kept open
                    if fresh.transport is not None:
                        fresh.transport.close()
                    refused = refusal(exc)
                    if refused is exc:
                        raise
                    raise refused from exc
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
            raise RedisTimeoutError(f"Redis did not answer within {self.timeout} s") from None
        for reply in out:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
        return out


def refusal(exc: BaseException) -> BaseException:
    """A refused AUTH as redis-py classes it (hiredis hands it over as a plain error reply),
    so the store's contract sees a refusal, not an outage or a bad request."""
    code = str(exc).split(" ", 1)[0]
    if isinstance(exc, ResponseError) and code in ("WRONGPASS", "NOAUTH"):
        return AuthenticationError(str(exc))
    if isinstance(exc, ResponseError) and code == "NOPERM":
        return NoPermissionError(str(exc))
    return exc
