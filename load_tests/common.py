"""What the load tests share: the broker they run on, named at start and in every saved result.

A test that goes through a broker takes ``--broker kafka|tansu`` (default
``kafka``: Apache Kafka, as ``streamseg bench``). There is no fallback: where
Kafka cannot start (no JDK, no jars) the script prints why on one line and
exits 1; Tansu runs only when asked for. A test that measures Valkey and the
engine alone starts no broker at all (:func:`valkey_only`) and says so
(:data:`NO_BROKER`), so no result of it is mistaken for a broker's.

Scripts import this as ``common`` (``load_tests/`` is ``sys.path[0]`` when one
of them is run as ``python load_tests/<name>.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamseg.devstack import DevStack
from streamseg.devstack.processes import describe_broker
from streamseg.errors import DevStackError

#: What ``--broker`` accepts (never ``auto``: a result must not depend on what is installed).
BROKERS = ("kafka", "tansu")
#: The broker a Valkey-only test names in its results.
NO_BROKER = "none (Valkey only)"


def add_broker_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--broker", choices=BROKERS, default="kafka",
                    help="kafka (default): Apache Kafka from its Maven jars (a JDK and "
                    "`streamseg kafka fetch`; exits 1 without them); tansu: the embedded "
                    "broker, only when asked for")


def announce(broker: str) -> str:
    """Print the broker this run is on (``kafka``, ``tansu`` or :data:`NO_BROKER`); its name."""
    name = describe_broker(broker) if broker in BROKERS else broker
    print(f"broker: {name}", flush=True)
    return name


def stamped(result: dict[str, Any], broker: str) -> dict[str, Any]:
    """``result`` with the broker's name first (``broker`` as given to :func:`announce`)."""
    return {"broker": describe_broker(broker) if broker in BROKERS else broker, **result}


@contextmanager
def valkey_only() -> Iterator[DevStack]:
    """A dev stack's Valkey, and no broker: for tests that measure none."""
    stack = DevStack(broker="kafka")  # the broker is never started
    try:
        stack.start_redis()
        yield stack
    finally:
        stack.stop()


def run_script(main: Callable[[], object]) -> None:
    """Run ``main``; a DevStackError (e.g. Kafka cannot start) is one line on stderr and exit 1."""
    try:
        main()
    except DevStackError as exc:
        print(f"{Path(sys.argv[0]).name}: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(1)
