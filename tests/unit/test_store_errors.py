"""Which Redis errors are outages to wait out, and which are about the request itself.

Every store method raises :class:`StoreUnavailable` for an outage and lets any
other error through unchanged: the engine's retry and the API's 503 rely on it.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from streamseg.errors import StoreRefused, StoreUnavailable
from streamseg.features.keys import Keys
from streamseg.features.store import Membership, RedisFeatureStore, is_outage, unavailable_on_outage

OUTAGES = [
    ConnectionError("Connection refused"), TimeoutError("Timeout reading"),
    BusyLoadingError("Redis is loading the dataset in memory"), ConnectionResetError(),
    ConnectionRefusedError(), OSError("Network is unreachable"),
    builtins.TimeoutError("timed out"),  # asyncio's timeouts too
    OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
    ReadOnlyError("You can't write against a read only replica."),
    TryAgainError("Multiple keys request during rehashing of slot"),
    ClusterDownError("The cluster is down"),
    MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable"),
    ResponseError("BUSY Redis is busy running a script."),
    # HashReader hands hiredis' error replies over unparsed: the code is in the message
    ResponseError("LOADING Redis is loading the dataset in memory"),
    ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
    ResponseError("READONLY You can't write against a read only replica."),
    ResponseError("MASTERDOWN Link with MASTER is down"),
    ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
    ResponseError("CLUSTERDOWN The cluster is down"),
]
NOT_OUTAGES = [
    ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ResponseError("ERR user_script:12: Script attempted to access nonexistent global variable"),
    ResponseError("BUSYKEY Target key name already exists."),
    ResponseError("BUSYGROUP Consumer Group name already exists"),
    ResponseError("NOPERM this user has no permissions to run the 'evalsha' command"),
]
#: Redis refusing streamseg's credentials or ACL: no retry cures it, the worker stops
REFUSALS = [
    AuthenticationError("WRONGPASS invalid username-password pair or user is disabled."),
    AuthenticationError("NOAUTH Authentication required."),
    NoPermissionError("this user has no permissions to run the 'evalsha' command"),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=repr)
def test_unreachable_or_refusing_redis__is_an_outage_to_retry(exc: Exception) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize("exc", [*NOT_OUTAGES, *REFUSALS, ValueError("not redis at all")], ids=repr)
def test_error_about_the_request__is_not_an_outage(exc: Exception) -> None:
    assert not is_outage(exc)


@pytest.mark.parametrize("exc", OUTAGES, ids=repr)
def test_outage__becomes_store_unavailable_saying_what_failed(exc: Exception) -> None:
    with pytest.raises(StoreUnavailable, match=r"^Redis unavailable while applying events: ") as caught, \
            unavailable_on_outage("applying events"):
        raise exc
    assert caught.value.__cause__ is exc


@pytest.mark.parametrize("exc", [*NOT_OUTAGES, ValueError("not redis at all")], ids=repr)
def test_other_errors__pass_through_unchanged(exc: Exception) -> None:
    with pytest.raises(type(exc)) as caught, unavailable_on_outage("applying events"):
        raise exc
    assert caught.value is exc


@pytest.mark.parametrize("exc", REFUSALS, ids=repr)
def test_refusal__becomes_store_refused_naming_the_setting(exc: Exception) -> None:
    with pytest.raises(StoreRefused, match=r"^Redis refused streamseg while applying events .*"
                       r"STREAMSEG_REDIS_URL") as caught, unavailable_on_outage("applying events"):
        raise exc
    assert caught.value.__cause__ is exc


# -- every method of the store keeps the contract ------------------------------------------

class _Failing:
    """Stands for a redis-py client, pipeline, script or HashReader: every call fails."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> _Failing:
        return self

    def __call__(self, *args: object, **kwargs: object) -> _Failing:
        return self

    def __await__(self) -> Any:
        raise self.exc
        yield  # pragma: no cover

    def __aiter__(self) -> _Failing:
        return self

    async def __anext__(self) -> bytes:
        raise self.exc


def _store(exc: Exception, *, lean: bool) -> RedisFeatureStore:
    failing = _Failing(exc)
    store = RedisFeatureStore(failing, Keys("t"), dedup_horizon_days=7, retention_days=30,  # type: ignore[arg-type]
                              hashes=failing if lean else None)  # type: ignore[arg-type]
    store._sha = "sha"
    return store


def _order() -> Any:
    from streamseg.events.models import TransactionEvent
    return TransactionEvent.model_validate({"event_id": "e1", "customer_id": "c1", "ts": 1_700_000_000_000,
                                            "amount": 5.0, "currency": "EUR"})


CALLS: dict[str, Callable[[RedisFeatureStore], Coroutine[Any, Any, object]]] = {
    "apply": lambda s: s.apply([_order()]),
    "write_memberships": lambda s: s.write_memberships([Membership("c1", 1, None, 0.5, 1, "one")]),
    "forget": lambda s: s.forget("c1"),
    "segments": lambda s: s.segments(),
    "write_catalog": lambda s: s.write_catalog({1: b"{}"}),
    "catalog": lambda s: s.catalog(),
    "sample_states": lambda s: s.sample_states(10),
    "stale_states": lambda s: s.stale_states(1.0, 10),
    "mark_scored": lambda s: s.mark_scored(["c1"], 1.0),
    "segment_sizes": lambda s: s.segment_sizes(),
    "write_worker_status": lambda s: s.write_worker_status("w", {"clock_ms": 1.0}),
    "worker_statuses": lambda s: s.worker_statuses(),
    "state": lambda s: s.state("c1"),
    "states": lambda s: s.states(["c1", "c2"]),
    "hold": lambda s: s.hold(["c1"]),
    "held": lambda s: s.held(10),
    "held_count": lambda s: s.held_count(),
    "release": lambda s: s.release(["c1"]),
}


@pytest.mark.parametrize("lean", [False, True], ids=["redis-py", "hashreader"])
@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize("exc", [ConnectionError("Connection refused"), OSError("reset"),
                                 ResponseError("LOADING Redis is loading the dataset in memory")],
                         ids=repr)
def test_every_store_method__raises_store_unavailable_on_an_outage(
    method: str, lean: bool, exc: Exception,
) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(CALLS[method](_store(exc, lean=lean)))
    assert caught.value.__cause__ is exc


@pytest.mark.parametrize("lean", [False, True], ids=["redis-py", "hashreader"])
@pytest.mark.parametrize("method", sorted(CALLS))
def test_every_store_method__lets_an_error_about_the_request_through(method: str, lean: bool) -> None:
    wrongtype = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    with pytest.raises(ResponseError) as caught:
        asyncio.run(CALLS[method](_store(wrongtype, lean=lean)))
    assert caught.value is wrongtype


@pytest.mark.parametrize("exc", [ConnectionError("Connection refused"), ReadOnlyError("replica")], ids=repr)
def test_ping__is_false_during_an_outage(exc: Exception) -> None:
    assert asyncio.run(_store(exc, lean=False).ping()) is False


def test_ping__raises_an_error_about_the_request() -> None:
    with pytest.raises(ResponseError):
        asyncio.run(_store(ResponseError("ERR unknown command 'PING'"), lean=False).ping())


def test_ping__is_false_while_redis_refuses_us() -> None:
    assert asyncio.run(_store(NoPermissionError("no ping for you"), lean=False).ping()) is False


def test_a_lost_script__is_loaded_again_not_an_outage() -> None:
    assert not is_outage(NoScriptError("No matching script."))
