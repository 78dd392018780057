"""The lookup benchmark's lean Redis client: where one reply ends in a stream of bytes.

The floor phase times each HGETALL from its scheduled send to the end of its
reply, so a reply split across reads must not end early, and one arriving
with the start of the next must not swallow it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "lookup_bench", Path(__file__).parents[2] / "load_tests" / "lookup_bench.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("lookup_bench", bench)  # its dataclasses look their module up
_spec.loader.exec_module(bench)

REPLY = b"*4\r\n$6\r\nn_ords\r\n$1\r\n3\r\n$4\r\nd\r\nx\r\n$0\r\n\r\n"  # a value may hold CR LF


def test_a_whole_reply_ends_where_it_ends() -> None:
    assert bench._resp_array_end(bytearray(REPLY)) == len(REPLY)
    assert bench._resp_array_end(bytearray(REPLY + b"*0\r\n")) == len(REPLY)


@pytest.mark.parametrize("cut", range(1, len(REPLY)))
def test_a_partial_reply_is_not_complete(cut: int) -> None:
    assert bench._resp_array_end(bytearray(REPLY[:cut])) == -1


def test_an_empty_array_and_an_error_are_one_line() -> None:
    assert bench._resp_array_end(bytearray(b"*0\r\n")) == 4
    err = b"-WRONGTYPE Operation against a key\r\n"
    assert bench._resp_array_end(bytearray(err + REPLY)) == len(err)


def test_the_command_is_resp() -> None:
    assert bench.hgetall_command("ss:{c1}:f") == b"*2\r\n$7\r\nHGETALL\r\n$9\r\nss:{c1}:f\r\n"
