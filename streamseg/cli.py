"""``streamseg dev | worker | api | generate | replay | bench | inspect | forget``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from streamseg.generate.scenarios import SCENARIOS
from streamseg.settings import Settings

if TYPE_CHECKING:
    import faust


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="embedded broker + Valkey + worker + generator, with a live view")
    dev.add_argument("--customers", type=int, default=2000)
    dev.add_argument("--rate", type=float, default=3000.0, help="generator events/s (0 = unpaced)")
    dev.add_argument("--days", type=float, default=120.0, help="simulated history length")
    dev.add_argument("--duration", type=float, default=None,
                     help="stop everything after this many seconds (default: run until Ctrl-C)")
    dev.add_argument("--workdir", type=Path, default=None, help="logs and truth file (default: temp)")
    dev.add_argument("--seed", type=int, default=7)
    dev.add_argument("--no-view", action="store_true", help="print one status line per refresh")

    sub.add_parser("worker", help="run a worker against STREAMSEG_KAFKA_BOOTSTRAP / STREAMSEG_REDIS_URL")

    api = sub.add_parser("api", help="serve the HTTP API in a process of its own, from Redis "
                         "(lookups never wait behind a worker's batch)")
    api.add_argument("--host", default=None, help="default: STREAMSEG_WEB_HOST")
    api.add_argument("--port", type=int, default=None, help="default: STREAMSEG_API_PORT (6067)")

    gen = sub.add_parser("generate", help="produce synthetic events from planted personas")
    gen.add_argument("--customers", type=int, default=2000)
    gen.add_argument("--rate", type=float, default=0.0, help="events/s (0 = as fast as possible)")
    gen.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    gen.add_argument("--days", type=float, default=120.0)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--truth", type=Path, default=None, help="write customer_id,persona CSV here")
    gen.add_argument("--scenario", choices=SCENARIOS, default=None,
                     help="a drift scenario on a steady population (streamseg/generate/scenarios.py)")
    gen.add_argument("--scenario-at", type=float, default=0.75,
                     help="when the change happens, as a fraction of --days")
    gen.add_argument("--scenario-persona", default=None, help="the persona that changes")
    gen.add_argument("--scenario-to", default="loyal_high_spender",
                     help="persona_shift: the behaviour taken on")
    gen.add_argument("--scenario-share", type=float, default=None,
                     help="new_persona: share of customers; shrink: share that leaves")

    rep = sub.add_parser("replay", help="replay history files (CSV, JSON Lines, Parquet) into the "
                         "input topics in event-time order")
    rep.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help="files to replay together (merged by event time)")
    rep.add_argument("--kind", choices=["transaction", "click"], default=None,
                     help="event kind of every file (default: inferred from each file's columns)")
    rep.add_argument("--map", dest="mapping", default=None, metavar="FIELD=COLUMN,...",
                     help="which column feeds which event field, e.g. customer_id=cust,ts=date")
    rep.add_argument("--default", dest="defaults", default=None, metavar="FIELD=VALUE,...",
                     help="values for fields a file lacks, e.g. currency=USD")
    rep.add_argument("--format", choices=["csv", "jsonl", "parquet"], default=None,
                     help="file format (default: from the extension)")
    rep.add_argument("--delimiter", default=None, help="CSV delimiter (default: sniffed)")
    rep.add_argument("--no-header", action="store_true", help="the CSV's first row is data; "
                     "columns are named 1, 2, ...")
    rep.add_argument("--speed", type=float, default=None, help="history seconds per wall second, "
                     "e.g. 3600 = an hour per second (default: as fast as possible)")
    rep.add_argument("--max-lag", type=int, default=None, metavar="N",
                     help="hold back while the worker group (STREAMSEG_APP_ID) is more than N events "
                     "behind, so it never sees one topic far ahead of the other (default: off)")
    rep.add_argument("--compression", choices=["gzip"], default=None)
    rep.add_argument("--dry-run", action="store_true", help="read and validate only; send nothing")
    rep.add_argument("--json", action="store_true", help="print the summary as JSON")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    bench = sub.add_parser("bench", help="throughput, latency and memory against baselines "
                           "(embedded broker + Valkey); writes bench.json, bench.md, bench_latency.png")
    bench.add_argument("--short", action="store_true", help="the CI mode: about a minute")
    bench.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                       help="soak length at 50%% of the engine's maximum (default 600, short 5; 0 = none)")
    bench.add_argument("--out", type=Path, default=Path("load_tests/results"))

    ins = sub.add_parser("inspect", help="show a customer's features and segment")
    ins.add_argument("customer_id")

    fgt = sub.add_parser("forget", help="erase a customer's data (GDPR) and publish tombstones + audit")
    fgt.add_argument("customer_id")
    fgt.add_argument("--actor", default=None, help="who asks, for the audit record (default: cli:$USER)")

    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "worker":
        return run_worker(settings)
    if args.command == "api":
        from streamseg.api.server import run as run_api

        return run_api(settings, args.host or settings.web_host, args.port or settings.api_port)
    if args.command == "dev":
        from streamseg.devstack.dev import run_dev

        return run_dev(args)
    if args.command == "generate":
        return run_generate(settings, args)
    if args.command == "replay":
        return run_replay(settings, args)
    if args.command == "bench":
        from streamseg.bench.runner import main as run_bench

        return run_bench(args.short, args.soak, args.out)
    if args.command == "inspect":
        return asyncio.run(inspect(settings, args.customer_id))
    if args.command == "forget":
        return asyncio.run(forget(settings, args.customer_id, args.actor))
    return 2  # pragma: no cover - argparse enforces the choices


def run_worker(settings: Settings) -> int:
    from streamseg.app import create_app
    from streamseg.topics import ensure_topics

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    app, _ = create_app(settings)
    execute(app, settings, loop)
    return 0


def execute(app: faust.App, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
    """Run a Faust worker for ``app`` until it is stopped."""
    from faust.worker import Worker

    worker = Worker(app, loglevel=settings.log_level, loop=loop)
    # At log levels >= warn Faust's start-up spinner sets the root logger to
    # DEBUG for good, so every library debug call (aiokafka logs each send)
    # builds a log record: a tenth of a busy worker's time.
    worker.spinner = None
    worker.execute_from_commandline()


def run_generate(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from streamseg.events.models import iso
    from streamseg.generate import assign_personas, produce
    from streamseg.generate.scenarios import Scenario

    scenario = None
    if args.scenario:
        try:
            scenario = Scenario(args.scenario, at=args.scenario_at, persona=args.scenario_persona,
                                to=args.scenario_to, share=args.scenario_share)
        except ValueError as exc:
            print(f"streamseg generate: {exc}", file=sys.stderr)
            return 2
    truth = (scenario.assign(args.customers, args.seed) if scenario
             else assign_personas(args.customers, seed=args.seed))
    end_ms = int(time.time() * 1000)
    stats = asyncio.run(produce(
        settings, truth, days=args.days, seed=args.seed, rate=args.rate or None,
        duration=args.duration, truth_path=args.truth, end_ms=end_ms, scenario=scenario,
    ))
    out = dataclasses.asdict(stats)
    if scenario:
        out["scenario"] = args.scenario
        out["change_ts"] = iso(scenario.change_ms(days=args.days, end_ms=end_ms))
    print(orjson.dumps(out).decode(), flush=True)
    return 0


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when done (rejected rows are in the summary and the DLQ), 1 if every row was
    rejected, 2 on a usage error (no such file, unknown column, unreachable broker)."""
    from streamseg.errors import StreamsegError
    from streamseg.replay import Mapping, ReplayOptions, format_summary, replay

    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # keep stderr for the progress bar
    try:
        options = ReplayOptions(
            paths=tuple(args.paths), kind=args.kind, mapping=Mapping.parse(args.mapping, args.defaults),
            format=args.format, delimiter=args.delimiter, header=False if args.no_header else None,
            speed=args.speed, dry_run=args.dry_run, compression=args.compression,
            progress=not args.no_progress, max_lag=args.max_lag,
        )
        summary = asyncio.run(replay(settings, options))
    except StreamsegError as exc:
        print(f"streamseg replay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what was handed to the producer has been flushed
        print("streamseg replay: interrupted; replaying the same files again is safe", file=sys.stderr)
        return 130
    print(summary.to_json().decode() if args.json else format_summary(summary), flush=True)
    return 1 if summary.rows_read and not summary.valid else 0


async def inspect(settings: Settings, customer_id: str) -> int:
    from streamseg.features.keys import Keys
    from streamseg.features.registry import derive
    from streamseg.features.store import RedisFeatureStore

    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    try:
        state = await store.state(customer_id)
    finally:
        await store.close()
    if not state:
        print(f"no such customer: {customer_id}", file=sys.stderr)
        return 1
    now = float(state.get("last_ts", 0.0)) if settings.clock == "event" else None
    import time

    feats = derive(state, now if now is not None else time.time() * 1000)
    out = {"customer_id": customer_id, "segment_id": state.get("seg"), "features": feats}
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + os.linesep)
    return 0


async def forget(settings: Settings, customer_id: str, actor: str | None) -> int:
    """Erase one customer; prints the published audit record."""
    import getpass

    from aiokafka.errors import KafkaError

    from streamseg.erasure import standalone_eraser
    from streamseg.errors import StreamsegError

    who = actor or f"cli:{getpass.getuser()}"
    try:
        async with standalone_eraser(settings) as eraser:
            audit = await eraser.forget(customer_id, actor=who, via="cli")
    except (StreamsegError, KafkaError, OSError) as exc:
        print(f"erasure of {customer_id!r} failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(audit.to_bytes().decode() + os.linesep)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
