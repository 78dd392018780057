"""Which Redis errors are outages to wait out, and which are about the request itself."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from streamseg.features.store import _is_outage


@pytest.mark.parametrize("exc", [
    ConnectionError("Connection refused"), TimeoutError("Timeout reading"),
    BusyLoadingError("Redis is loading the dataset in memory"), ConnectionResetError(),
    OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
    ReadOnlyError("You can't write against a read only replica."),
    ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable"),
    ResponseError("BUSY Redis is busy running a script."),
])
def test_unreachable_or_refusing_redis__is_an_outage_to_retry(exc: Exception) -> None:
    assert _is_outage(exc)


@pytest.mark.parametrize("exc", [
    ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ResponseError("ERR user_script:12: Script attempted to access nonexistent global variable"),
    NoPermissionError("this user has no permissions to run the 'evalsha' command"),
    ValueError("not redis at all"),
])
def test_error_about_the_request__is_not_an_outage(exc: Exception) -> None:
    assert not _is_outage(exc)
