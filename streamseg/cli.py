"""The ``streamseg`` command line: one small parser builder and one handler per command.

:data:`COMMANDS` is the table of contents. :func:`main` loads the settings and
runs the chosen handler; whatever a handler raises is answered in one place,
:mod:`streamseg.cli_errors` (one line on stderr; exit 2 for usage or
configuration, 1 for a runtime failure).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from streamseg.cli_errors import answer
from streamseg.devstack.processes import BROKERS
from streamseg.errors import ConfigError, StreamsegError
from streamseg.generate.scenarios import SCENARIOS
from streamseg.settings import Settings

if TYPE_CHECKING:
    import faust

    from streamseg.access_guard import AccessGuard

DESCRIPTION = ("Streaming customer segmentation: run a worker or the HTTP API, try it all "
               "locally (dev), feed it events (generate, replay), look a customer up "
               "(inspect) or erase one (forget). Settings come from environment variables "
               "named STREAMSEG_<SETTING> (docs/operations.md).")


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's real default, unless its help already says what it defaults to."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == argparse.SUPPRESS
                or "default" in text or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its help, its options and what runs it."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Settings, argparse.Namespace], int]
    #: how its error line starts (default "streamseg <command>")
    failed: Callable[[argparse.Namespace], str] | None = None


def main(argv: list[str] | None = None) -> int:
    """Run ``streamseg ARGV``; returns the exit status."""
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    settings: Settings | None = None
    try:
        settings = Settings()
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return command.run(settings, args)
    except Exception as exc:
        found = answer(exc, settings)
        if found is None:
            raise
        who = (command.failed(args) if command.failed and settings is not None
               else f"streamseg {args.command}")
        print(f"{who}: {found.line}", file=sys.stderr, flush=True)
        return found.code


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="streamseg", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help, description=command.help,
                                         formatter_class=HelpFormatter))
    return parser


# --- options of each command -----------------------------------------------------------------


def _dev_arguments(dev: argparse.ArgumentParser) -> None:
    dev.add_argument("--customers", type=int, default=2000, help="simulated customers")
    dev.add_argument("--rate", type=float, default=3000.0, help="generator events/s (0 = unpaced)")
    dev.add_argument("--days", type=float, default=120.0, help="simulated history length in days")
    dev.add_argument("--duration", type=float, default=None,
                     help="stop everything after this many seconds (default: run until Ctrl-C)")
    dev.add_argument("--workdir", type=Path, default=Path("streamseg-data"),
                     help="logs, data and truth file, relative to the current folder")
    dev.add_argument("--seed", type=int, default=7, help="random seed of the generator")
    dev.add_argument("--no-view", action="store_true", help="print one status line per refresh")
    dev.add_argument("--broker", choices=BROKERS, default="auto",
                     help="kafka: Apache Kafka from its Maven jars (streamseg kafka fetch); "
                     "tansu: the pip-only embedded broker; auto (the default): kafka where a JDK "
                     "and the jars are present, else tansu")
    dev.add_argument("--kafka-nodes", type=int, choices=[1, 3], default=1,
                     help="Apache Kafka nodes on loopback (3: replication factor 3, "
                     "min.insync.replicas=2)")
    dev.add_argument("--redis-cluster", action="store_true",
                     help="a Valkey cluster (3 masters, 3 replicas) instead of one Valkey node; "
                     "the worker waits for a replica before acknowledging (docs/redis-cluster.md)")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command configured by its STREAMSEG_* settings alone."""


def _api_arguments(api: argparse.ArgumentParser) -> None:
    api.add_argument("--host", default=None, help="address to listen on (default: STREAMSEG_WEB_HOST)")
    api.add_argument("--port", type=int, default=None,
                     help="port to listen on (default: STREAMSEG_API_PORT, 6067)")


def _generate_arguments(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("--customers", type=int, default=2000, help="simulated customers")
    gen.add_argument("--rate", type=float, default=0.0, help="events/s (0 = as fast as possible)")
    gen.add_argument("--duration", type=float, default=None,
                     help="stop after this many seconds (default: when the history is sent)")
    gen.add_argument("--days", type=float, default=120.0, help="simulated history length in days")
    gen.add_argument("--seed", type=int, default=7, help="random seed")
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
    gen.add_argument("--lifecycle", action="store_true",
                     help="plant each persona's lapse process and visit rhythm "
                     "(streamseg/generate/lifecycle.py), for measuring customer value")


def _replay_arguments(rep: argparse.ArgumentParser) -> None:
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
                     "behind, so the backlog stays bounded (default: off)")
    rep.add_argument("--compression", choices=["gzip"], default=None,
                     help="the files are compressed (default: from the extension)")
    rep.add_argument("--dry-run", action="store_true", help="read and validate only; send nothing")
    rep.add_argument("--json", action="store_true", help="print the summary as JSON")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--short", action="store_true", help="the CI mode: about a minute")
    bench.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                       help="soak length at 50%% of the engine's maximum (default 600, short 5; "
                       "0 = none)")
    bench.add_argument("--out", type=Path, default=Path("load_tests/results"),
                       help="folder the figures are written to")
    bench.add_argument("--broker", choices=["kafka", "tansu"], default="kafka",
                       help="the broker measured on (tansu only when asked: it slows as "
                       "partitions age, so its figures are not the engine's)")


def _kafka_arguments(kafka: argparse.ArgumentParser) -> None:
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    fetch_help = ("resolve Apache Kafka's jars through Maven into the cache folder "
                  "($STREAMSEG_KAFKA_HOME or ~/.cache/streamseg/kafka-<version>)")
    kfetch = kafka_sub.add_parser("fetch", help=fetch_help, description=fetch_help,
                                  formatter_class=HelpFormatter)
    kfetch.add_argument("--verbose", action="store_true", help="show Maven's output")
    start_help = "run Apache Kafka on loopback until Ctrl-C and print its bootstrap address"
    kstart = kafka_sub.add_parser("start", help=start_help, description=start_help,
                                  formatter_class=HelpFormatter)
    kstart.add_argument("--nodes", type=int, choices=[1, 3], default=1,
                        help="nodes in the cluster (3: replication factor 3)")
    kstart.add_argument("--workdir", type=Path, default=None,
                        help="data and logs (default: a new temporary folder)")


def _inspect_arguments(ins: argparse.ArgumentParser) -> None:
    ins.add_argument("customer_id", help="the customer to show")


def _forget_arguments(fgt: argparse.ArgumentParser) -> None:
    fgt.add_argument("customer_id", help="the customer to erase")
    fgt.add_argument("--actor", default=None, help="who asks, for the audit record (default: cli:$USER)")


# --- what runs each command ------------------------------------------------------------------


def _run_dev(settings: Settings, args: argparse.Namespace) -> int:
    from streamseg.devstack.dev import run_dev

    args.workdir = args.workdir.resolve()
    return run_dev(args)


def _run_api(settings: Settings, args: argparse.Namespace) -> int:
    from streamseg.api.server import run as run_api

    return run_api(settings, args.host or settings.web_host, args.port or settings.api_port)


def _run_bench(settings: Settings, args: argparse.Namespace) -> int:
    from streamseg.bench.runner import main as run_bench

    return run_bench(args.short, args.soak, args.out, args.broker)


def _run_inspect(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(inspect(settings, args.customer_id))


def _run_forget(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(forget(settings, args.customer_id, args.actor))


def run_kafka(settings: Settings, args: argparse.Namespace) -> int:
    """``streamseg kafka fetch | start``."""
    import signal
    import tempfile
    import time

    from streamseg.devstack import kafka

    if args.kafka_command == "fetch":
        jars = kafka.fetch(quiet=not args.verbose)
        print(f"Apache Kafka {kafka.KAFKA_VERSION}: {len(list(jars.glob('*.jar')))} jars "
              f"in {jars}")
        return 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streamseg-kafka-"))
    cluster = kafka.KafkaCluster(workdir, nodes=args.nodes).start()
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


def run_worker(settings: Settings, args: argparse.Namespace | None = None) -> int:
    """Run a worker until it is stopped; a cluster that refuses it (credentials, TLS, ACLs:
    see docs/security.md), at start or later, ends it with :class:`KafkaAccessDenied`."""
    from streamseg.app import create_app
    from streamseg.kafka_security import check_settings_access
    from streamseg.topics import ensure_topics, worker_topics
    from streamseg.tuning import tune_process

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # one connection of its own first: aiokafka would hide a refused password behind
    # "unable to bootstrap", and Faust meets a missing ACL only deep in its start-up
    loop.run_until_complete(check_settings_access(settings, topics=worker_topics(settings),
                                                  group=settings.app_id))
    rf = loop.run_until_complete(ensure_topics(settings, check_access=False))
    settings = settings.replace(topic_replication=rf)  # Faust's own topics: the same
    worker = create_app(settings)
    tune_process(worker.app, settings)
    access = worker.access
    try:
        execute(worker.app, settings, loop, access)
    except SystemExit as done:  # Faust's worker ends by sys.exit
        if access.denied is None or done.code not in (0, 1, None):
            raise
    if access.denied is not None:
        raise access.denied
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
                # no traceback: the worker stops as usual, run_worker raises the refusal

    worker = StreamsegWorker(app, loglevel=settings.log_level, loop=loop)
    if access is not None:
        access.arm()
    # At log levels >= warn Faust's start-up spinner sets the root logger to
    # DEBUG for good, so every library debug call (aiokafka logs each send)
    # builds a log record: a tenth of a busy worker's time.
    worker.spinner = None
    worker.execute_from_commandline()


def run_generate(settings: Settings, args: argparse.Namespace) -> int:
    """Produce the synthetic history; print its figures as one JSON line."""
    import time

    from streamseg.events.models import iso
    from streamseg.generate import assign_personas, produce
    from streamseg.generate.lifecycle import Lifecycle
    from streamseg.generate.scenarios import Scenario

    scenario = None
    if args.scenario:
        try:
            scenario = Scenario(args.scenario, at=args.scenario_at, persona=args.scenario_persona,
                                to=args.scenario_to, share=args.scenario_share)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    truth = (scenario.assign(args.customers, args.seed) if scenario
             else assign_personas(args.customers, seed=args.seed))
    end_ms = int(time.time() * 1000)
    stats = asyncio.run(produce(
        settings, truth, days=args.days, seed=args.seed, rate=args.rate or None,
        duration=args.duration, truth_path=args.truth, end_ms=end_ms,
        scenario=Lifecycle(args.seed, scenario) if args.lifecycle else scenario,
    ))
    out = dataclasses.asdict(stats)
    if scenario:
        out["scenario"] = args.scenario
        out["change_ts"] = iso(scenario.change_ms(days=args.days, end_ms=end_ms))
    print(orjson.dumps(out).decode(), flush=True)
    return 0


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when done (rejected rows are in the summary and the DLQ), 1 if every row was
    rejected or the cluster failed us, 2 on a usage error (no such file, unknown column)."""
    from streamseg.replay import Mapping, ReplayOptions, format_summary, replay

    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # keep stderr for the progress bar
    options = ReplayOptions(
        paths=tuple(args.paths), kind=args.kind,
        mapping=Mapping.parse(args.mapping, args.defaults, args.ts_format),
        format=args.format, delimiter=args.delimiter, header=False if args.no_header else None,
        speed=args.speed, dry_run=args.dry_run, compression=args.compression,
        progress=not args.no_progress, max_lag=args.max_lag,
    )
    try:
        summary = asyncio.run(replay(settings, options))
    except KeyboardInterrupt:  # what was handed to the producer has been flushed
        print("streamseg replay: interrupted; replaying the same files again is safe", file=sys.stderr)
        return 130
    print(summary.to_json().decode() if args.json else format_summary(summary), flush=True)
    return 1 if summary.rows_read and not summary.valid else 0


async def inspect(settings: Settings, customer_id: str) -> int:
    """Print what ``GET /v1/customers/{id}`` answers for ``customer_id``, read from Redis."""
    from streamseg.api.lookup import lookup_stored
    from streamseg.features.keys import Keys
    from streamseg.features.store import RedisFeatureStore

    store = RedisFeatureStore.from_url(settings.redis_url, Keys(settings.key_prefix),
                                       dedup_horizon_days=settings.dedup_horizon_days,
                                       retention_days=settings.retention_days)
    try:
        body = await lookup_stored(store, settings, customer_id)
    finally:
        await store.close()
    if body is None:
        raise StreamsegError(f"no data for customer {customer_id!r} (never seen, expired or erased)")
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + os.linesep)
    return 0


async def forget(settings: Settings, customer_id: str, actor: str | None) -> int:
    """Erase one customer; prints the published audit record."""
    import getpass

    from streamseg.erasure import standalone_eraser

    who = actor or f"cli:{getpass.getuser()}"
    async with standalone_eraser(settings) as eraser:
        audit = await eraser.forget(customer_id, actor=who, via="cli")
    sys.stdout.write(audit.to_bytes().decode() + os.linesep)
    return 0


#: Every subcommand, in the order ``streamseg --help`` lists them.
COMMANDS: dict[str, Command] = {
    "dev": Command("embedded broker, Valkey, worker and generator on this machine, with a live "
                   "view", _dev_arguments, _run_dev),
    "worker": Command("run a worker against STREAMSEG_KAFKA_BOOTSTRAP and STREAMSEG_REDIS_URL",
                      _no_arguments, run_worker),
    "api": Command("serve the HTTP API in a process of its own, from Redis (lookups never wait "
                   "behind a worker's batch)", _api_arguments, _run_api),
    "generate": Command("produce synthetic events from planted personas", _generate_arguments,
                        run_generate),
    "replay": Command("replay history files (CSV, JSON Lines, Parquet) into the input topics in "
                      "event-time order", _replay_arguments, run_replay),
    "bench": Command("throughput, latency and memory against baselines (Apache Kafka and Valkey "
                     "on this machine); writes bench.json, bench.md, bench_latency.png",
                     _bench_arguments, _run_bench),
    "kafka": Command("the Apache Kafka harness (jars from Maven Central)", _kafka_arguments,
                     run_kafka),
    "inspect": Command("show a customer's segment and features, as the HTTP API does",
                       _inspect_arguments, _run_inspect),
    "forget": Command("erase a customer's data (GDPR) and publish tombstones and an audit record",
                      _forget_arguments, _run_forget,
                      failed=lambda args: f"erasure of {args.customer_id!r} failed"),
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
