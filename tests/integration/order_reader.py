"""``streamseg worker`` that also records the order its batches are handed over in.

``python -m tests.integration.order_reader OUT`` with ``STREAMSEG_*`` settings runs the
worker as ``streamseg worker`` does, with :meth:`Engine.prepare` (called on each batch as
the consumer hands it over, in order) appending one JSON line per batch to OUT:
``[[topic, record time in ms], ...]``. Used by ``test_event_time_alignment.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streamseg.cli import run_worker
from streamseg.engine import Engine, InMessage
from streamseg.settings import Settings


def main(out: str) -> int:
    handed = Path(out).open("ab")
    prepare = Engine.prepare

    def recording(self: Engine, messages: Sequence[InMessage]) -> Any:
        handed.write(orjson.dumps([(m.topic, round((m.timestamp or 0) * 1000)) for m in messages]) + b"\n")
        handed.flush()
        return prepare(self, messages)

    Engine.prepare = recording  # type: ignore[method-assign]
    return run_worker(Settings())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
