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
from pydantic import ValidationError

from streamseg.devstack.processes import BROKERS
from streamseg.errors import StreamsegError
from streamseg.generate.scenarios import SCENARIOS
from streamseg.settings import Settings

if TYPE_CHECKING:
    import faust

    from streamseg.app import AccessGuard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="embedded broker + Valkey + worker + generator, with a live view")
    dev.add_argument("--customers", type=int, default=2000)
    dev.add_argument("--rate", type=float, default=3000.0, help="generator events/s (0 = unpaced)")
    dev.add_argument("--days", type=float, default=120.0, help="simulated history length")
    dev.add_argument("--duration", type=float, default=None,
                     help="stop everything after this many seconds (default: run until Ctrl-C)")
    dev.add_argument("--workdir", type=Path, default=None, help="logs, data and truth file (default: ./streamseg-data)")
    dev.add_argument("--seed", type=int, default=7)
    dev.add_argument("--no-view", action="store_true", help="print one status line per refresh")
    dev.add_argument("--broker", choices=BROKERS, default="auto",
                     help="kafka: Apache Kafka from its Maven jars (`streamseg kafka fetch`); "
                     "tansu: the pip-only embedded broker; auto (default): kafka where a JDK "
                     "and the jars are present, else tansu")
    dev.add_argument("--kafka-nodes", type=int, choices=[1, 3], default=1,
                     help="Apache Kafka nodes on loopback (3: replication factor 3, "
                     "min.insync.replicas=2)")

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
    rep.add_argument("--ts-format", default=None, metavar="FORMAT",
                     help="read the ts column with this strptime format, e.g. %%Y%%m%%d or "
                     "'%%d/%%m/%%Y %%H:%%M' (UTC unless it has %%z; default: ISO-8601, "
                     "compact 19970101 included, or epoch seconds/milliseconds)")
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
                           "(Apache Kafka + Valkey on this machine); writes bench.json, bench.md, bench_latency.png")
    bench.add_argument("--short", action="store_true", help="the CI mode: about a minute")
    bench.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                       help="soak length at 50%% of the engine's maximum (default 600, short 5; 0 = none)")
    bench.add_argument("--out", type=Path, default=Path("load_tests/results"))
    bench.add_argument("--broker", choices=["kafka", "tansu"], default="kafka",
                       help="the broker measured on (default kafka; tansu only when asked: it "
                       "slows as partitions age, so its figures are not the engine's)")

    kafka = sub.add_parser("kafka", help="the Apache Kafka harness (jars from Maven Central)")
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True)
    kfetch = kafka_sub.add_parser("fetch", help="resolve Apache Kafka's jars through Maven into "
                                  "the cache folder ($STREAMSEG_KAFKA_HOME or "
                                  "~/.cache/streamseg/kafka-<version>)")
    kfetch.add_argument("--verbose", action="store_true", help="show Maven's output")
    kstart = kafka_sub.add_parser("start", help="run Apache Kafka on loopback until Ctrl-C and "
                                  "print its bootstrap address")
    kstart.add_argument("--nodes", type=int, choices=[1, 3], default=1)
    kstart.add_argument("--workdir", type=Path, default=None,
                        help="data and logs (default: a new temporary folder)")

    ins = sub.add_parser("inspect", help="show a customer's features and segment")
    ins.add_argument("customer_id")

    fgt = sub.add_parser("forget", help="erase a customer's data (GDPR) and publish tombstones + audit")
    fgt.add_argument("customer_id")
    fgt.add_argument("--actor", default=None, help="who asks, for the audit record (default: cli:$USER)")

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"streamseg {args.command}: invalid settings: {settings_errors(exc)}",
              file=sys.stderr, flush=True)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "worker":
        return run_worker(settings)
    if args.command == "api":
        from streamseg.api.server import run as run_api

        try:
            return run_api(settings, args.host or settings.web_host, args.port or settings.api_port)
        except StreamsegError as exc:  # the cluster refused it, or unusable TLS files
            print(f"streamseg api: {exc}", file=sys.stderr, flush=True)
            return 1
    if args.command == "dev":
        from streamseg.devstack.dev import run_dev

        return run_dev(args)
    if args.command == "generate":
        return run_generate(settings, args)
    if args.command == "replay":
        return run_replay(settings, args)
    if args.command == "bench":
        from streamseg.bench.runner import main as run_bench

        return run_bench(args.short, args.soak, args.out, args.broker)
    if args.command == "kafka":
        return run_kafka(args)
    if args.command == "inspect":
        return asyncio.run(inspect(settings, args.customer_id))
    if args.command == "forget":
        return asyncio.run(forget(settings, args.customer_id, args.actor))
    return 2  # pragma: no cover - argparse enforces the choices


def run_kafka(args: argparse.Namespace) -> int:
    """``streamseg kafka fetch | start``."""
    import signal
    import tempfile
    import time

    from streamseg.devstack import kafka
    from streamseg.errors import DevStackError

    try:
        if args.kafka_command == "fetch":
            jars = kafka.fetch(quiet=not args.verbose)
            print(f"Apache Kafka {kafka.KAFKA_VERSION}: {len(list(jars.glob('*.jar')))} jars "
                  f"in {jars}")
            return 0
        signal.signal(signal.SIGINT, signal.default_int_handler)
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streamseg-kafka-"))
        cluster = kafka.KafkaCluster(workdir, nodes=args.nodes).start()
    except DevStackError as exc:
        print(f"streamseg kafka: {exc}", file=sys.stderr)
        return 1
    print(f"Apache Kafka {kafka.KAFKA_VERSION}, {args.nodes} node(s): "
          f"STREAMSEG_KAFKA_BOOTSTRAP={cluster.bootstrap}  (logs in {workdir}; Ctrl-C stops)",
          flush=True)
    try:
        while all(n.running for n in cluster.members):
            time.sleep(1.0)
        print("a Kafka node exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()


def run_worker(settings: Settings) -> int:
    """Exit 1 with one line on stderr if the cluster refuses the worker (credentials, TLS,
    ACLs: see docs/security.md), at start or later."""
    from streamseg.app import create_app
    from streamseg.kafka_security import check_settings_access
    from streamseg.topics import ensure_topics, worker_topics
    from streamseg.tuning import tune_process

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        # one connection of its own first: aiokafka would hide a refused password behind
        # "unable to bootstrap", and Faust meets a missing ACL only deep in its start-up
        loop.run_until_complete(check_settings_access(settings, topics=worker_topics(settings),
                                                      group=settings.app_id))
        rf = loop.run_until_complete(ensure_topics(settings, check_access=False))
        settings = settings.replace(topic_replication=rf)  # Faust's own topics: the same
        worker = create_app(settings)
    except StreamsegError as exc:
        print(f"streamseg worker: {exc}", file=sys.stderr, flush=True)
        return 1
    tune_process(worker.app, settings)
    access = worker.access
    try:
        execute(worker.app, settings, loop, access)
    except SystemExit as done:  # Faust's worker ends by sys.exit
        if access.denied is None:
            raise
        if done.code not in (0, 1, None):
            raise
    if access.denied is not None:
        print(f"streamseg worker: {access.denied}", file=sys.stderr, flush=True)
        return 1
    return 0


def execute(app: faust.App, settings: Settings, loop: asyncio.AbstractEventLoop,
            access: AccessGuard | None = None) -> None:
    """Run a Faust worker for ``app`` until it is stopped (``access``: see AccessGuard)."""
    from faust.worker import Worker

    class StreamsegWorker(Worker):  # type: ignore[misc]
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as exc:  # e.g. Faust creating its leader topic without the ACL
                if access is None or not access.record(exc):
                    raise
                # no traceback: the worker stops as usual, run_worker prints the one line

    worker = StreamsegWorker(app, loglevel=settings.log_level, loop=loop)
    if access is not None:
        access.arm()
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
    try:
        stats = asyncio.run(produce(
            settings, truth, days=args.days, seed=args.seed, rate=args.rate or None,
            duration=args.duration, truth_path=args.truth, end_ms=end_ms, scenario=scenario,
        ))
    except Exception as exc:
        refused = _refused(settings, exc)
        if refused is None:
            raise
        print(f"streamseg generate: {refused}", file=sys.stderr, flush=True)
        return 1
    out = dataclasses.asdict(stats)
    if scenario:
        out["scenario"] = args.scenario
        out["change_ts"] = iso(scenario.change_ms(days=args.days, end_ms=end_ms))
    print(orjson.dumps(out).decode(), flush=True)
    return 0


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when done (rejected rows are in the summary and the DLQ), 1 if every row was
    rejected, 2 on a usage error (no such file, unknown column, unreachable broker)."""
    from streamseg.replay import Mapping, ReplayOptions, format_summary, replay

    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # keep stderr for the progress bar
    try:
        options = ReplayOptions(
            paths=tuple(args.paths), kind=args.kind, mapping=Mapping.parse(args.mapping, args.defaults,
                                                                     args.ts_format),
            format=args.format, delimiter=args.delimiter, header=False if args.no_header else None,
            speed=args.speed, dry_run=args.dry_run, compression=args.compression,
            progress=not args.no_progress, max_lag=args.max_lag,
        )
        summary = asyncio.run(replay(settings, options))
    except Exception as exc:
        refused = _refused(settings, exc)  # the cluster refused us: exit 1, as the other commands
        if refused is not None:
            print(f"streamseg replay: {refused}", file=sys.stderr, flush=True)
            return 1
        if not isinstance(exc, StreamsegError):
            raise
        print(f"streamseg replay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what was handed to the producer has been flushed
        print("streamseg replay: interrupted; replaying the same files again is safe", file=sys.stderr)
        return 130
    print(summary.to_json().decode() if args.json else format_summary(summary), flush=True)
    return 1 if summary.rows_read and not summary.valid else 0


async def inspect(settings: Settings, customer_id: str) -> int:
    from streamseg.api.lookup import warming_up_note
    from streamseg.features.keys import Keys
    from streamseg.features.registry import derive
    from streamseg.features.store import RedisFeatureStore

    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    try:
        state = await store.state(customer_id)
        statuses = await store.worker_statuses()
    finally:
        await store.close()
    if not state:
        print(f"no such customer: {customer_id}", file=sys.stderr)
        return 1
    now = float(state.get("last_ts", 0.0)) if settings.clock == "event" else None
    import time

    feats = derive(state, now if now is not None else time.time() * 1000)
    out = {"customer_id": customer_id, "segment_id": state.get("seg"), "features": feats,
           "warming_up": warming_up_note(state, statuses)}
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + os.linesep)
    return 0


async def forget(settings: Settings, customer_id: str, actor: str | None) -> int:
    """Erase one customer; prints the published audit record."""
    import getpass

    from aiokafka.errors import KafkaError

    from streamseg.erasure import ErasureIncomplete, standalone_eraser

    who = actor or f"cli:{getpass.getuser()}"
    try:
        async with standalone_eraser(settings) as eraser:
            audit = await eraser.forget(customer_id, actor=who, via="cli")
    except (StreamsegError, KafkaError, OSError) as exc:
        refused = _refused(settings, exc)
        if refused is not None and isinstance(exc, ErasureIncomplete):
            print(f"erasure of {customer_id!r} failed: {refused}; its Redis data is already "
                  "removed: run `streamseg forget` again once that is fixed", file=sys.stderr)
        else:
            print(f"erasure of {customer_id!r} failed: {refused or exc}", file=sys.stderr)
        return 1
    sys.stdout.write(audit.to_bytes().decode() + os.linesep)
    return 0


def settings_errors(exc: ValidationError) -> str:
    """A settings validation error as one line, naming the variables (never their values).

    >>> try:
    ...     Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc")
    ... except ValidationError as exc:
    ...     print(settings_errors(exc))
    STREAMSEG_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs STREAMSEG_KAFKA_SASL_PASSWORD
    """
    out = []
    for err in exc.errors():
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        loc = err.get("loc") or ()
        out.append(f"STREAMSEG_{str(loc[0]).upper()}: {msg}" if loc else msg)
    return "; ".join(out)


def _refused(settings: Settings, exc: BaseException) -> StreamsegError | None:
    """The one line to end with when the cluster refused us (or the TLS files are unusable)."""
    from streamseg.kafka_security import KafkaTlsFilesError, settings_access_denied

    if isinstance(exc, KafkaTlsFilesError):
        return exc
    return settings_access_denied(settings, exc)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
