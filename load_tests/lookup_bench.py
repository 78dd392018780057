"""Customer lookup latency (GET /v1/customers/{id}) while the worker is processing events.

Real parts only: a broker (Apache Kafka; Tansu with ``--broker tansu``), Valkey,
one `streamseg worker` and a paced `streamseg generate` feeding it. A lean
asyncio HTTP/1.1 client fires requests on an open-loop schedule (a fixed rate, whatever the answers do), and each
latency is measured from the request's scheduled time, so a stall shows up in
every request it delays. Phases, in one run so they compare:

    idle      lookups before any event is generated (the worker waits)
    busy      lookups while the generator feeds the worker       <- the target
    api       lookups while busy, answered by `streamseg api` (the API in a
              process of its own, reading Redis) instead of the worker
    healthz   GET /healthz on the worker while busy: its HTTP floor without Redis
    floor-*   (with --floor, after each api round) a lookup's two parts alone at the
              same rate and load: floor-http, GET /healthz on `streamseg api` (an
              HTTP round trip that reads nothing); floor-valkey, the lookup's HGETALL
              sent by the client straight to Valkey (no HTTP server in between)
    mainloop  (with --compare-main-loop) lookups while busy, the web server
              sharing the worker's event loop (STREAMSEG_WEB_IN_THREAD=false)

Prints and saves load_tests/results/lookup.json and lookup.md, which name the broker.

    python load_tests/lookup_bench.py [--broker kafka|tansu] --rate 1000 --seconds 20 --compare-main-loop
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `common`, also when a test loads this file

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import redis
from common import add_broker_argument, announce, run_script, stamped
from prometheus_client.parser import text_string_to_metric_families

from streamseg.devstack import DevStack, ManagedProcess, free_port
from streamseg.devstack.processes import wait_for_port
from streamseg.features.keys import Keys

RESULTS = Path(__file__).parent / "results"
TOKEN = "bench-token-0123456789abcdef"
TARGET_P99_MS = 5.0


@dataclass
class Phase:
    name: str
    path: str  # "customer" or a fixed path
    seconds: float


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q / 100 * len(sorted_ms)))]


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time.

    The client shares the two cores with everything it measures, so it is kept
    lean: aiohttp's client cost about as much CPU per request as the server.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1  # bytes of the whole response once its head is in
        self.status = 0
        self.body_at = 0
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            at = head.index(b"\r\ncontent-length:") + 17
            self.body_at = end + 4
            self.need = self.body_at + int(head[at:head.index(b"\r\n", at)])
        if len(self.buf) >= self.need and self.waiter is not None:
            body = bytes(self.buf[self.body_at:self.need])
            del self.buf[:self.need]
            self.need = -1
            self.waiter.set_result((self.status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc!r}"))


class _RespConn(_Conn):
    """One Redis connection, one command at a time; a reply is a RESP2 array of bulk strings.

    For the floor phase: the lookup's own ``HGETALL``, sent by the client straight
    to Valkey, with no HTTP server in between.
    """

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = _resp_array_end(self.buf)
        if end >= 0 and self.waiter is not None:
            reply = bytes(self.buf[:end])
            del self.buf[:end]
            self.waiter.set_result((200 if reply[:1] == b"*" else 500, reply))


def _resp_array_end(buf: bytearray) -> int:
    """Where the first complete reply (an array of bulk strings, or an error) ends; -1 if none yet."""
    eol = buf.find(b"\r\n")
    if eol < 0:
        return -1
    if buf[:1] != b"*":  # an error or a simple string: one line
        return eol + 2
    at = eol + 2
    for _ in range(int(buf[1:eol])):
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            return -1
        at = eol + 2 + int(buf[at + 1:eol]) + 2  # "$<len>\r\n" <len bytes> "\r\n"
        if at > len(buf):
            return -1
    return at


def hgetall_command(key: str) -> bytes:
    k = key.encode()
    return b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%s\r\n" % (len(k), k)


async def open_loop(base: str, path_of: Any, rate: float, seconds: float,
                    protocol: type[_Conn] = _Conn) -> dict[str, Any]:
    """Send rate*seconds requests at their scheduled times; latency from the schedule.

    ``path_of()`` gives each request's HTTP path, or with ``protocol=_RespConn``
    (``base`` then ``redis://host:port``) each request's Redis command.
    """
    host, port = base.removeprefix("http://").removeprefix("redis://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    auth = f"Authorization: Bearer {TOKEN}\r\nHost: {host}\r\n\r\n".encode()

    def request() -> bytes:
        if protocol is _RespConn:
            command: bytes = path_of()
            return command
        return f"GET {path_of()} HTTP/1.1\r\n".encode() + auth
    n = int(rate * seconds)
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[str, int] = {}
    idle: list[_Conn] = []

    async def one(scheduled: float) -> None:
        sent = time.perf_counter()
        try:
            conn = idle.pop() if idle else (await loop.create_connection(protocol, host, int(port)))[1]
            conn.waiter = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(request())
            status, body = await conn.waiter
            conn.waiter = None
            idle.append(conn)
            key = str(status) if body[:1] in (b"{", b"*") else f"{status} without a JSON body"
        except (OSError, ValueError) as exc:
            key = type(exc).__name__
        done = time.perf_counter()
        statuses[key] = statuses.get(key, 0) + 1
        latencies.append((done - scheduled) * 1000)
        service.append((done - sent) * 1000)

    # warm a pool so connection set-up is not measured
    await asyncio.gather(*(one(time.perf_counter()) for _ in range(32)))
    latencies.clear()
    service.clear()
    statuses.clear()
    # the client's own garbage collector must not be measured either: with 20k request
    # tasks alive its full collections stalled the client (busy p99 88 ms with them,
    # 23 ms without, on the same machine)
    gc.collect()
    gc.freeze()
    gc.disable()
    tasks = []
    cpu0 = time.process_time()
    start = time.perf_counter() + 0.05
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    sent_by = time.perf_counter()
    await asyncio.gather(*tasks)
    client_cpu = time.process_time() - cpu0
    gc.enable()
    gc.unfreeze()
    for conn in idle:
        assert conn.transport is not None
        conn.transport.close()
    lat, svc = sorted(latencies), sorted(service)
    return {
        "requests": n, "rate_target": rate, "rate_achieved": round(n / (sent_by - start), 1),
        "statuses": statuses,
        "p50_ms": round(percentile(lat, 50), 3), "p95_ms": round(percentile(lat, 95), 3),
        "p99_ms": round(percentile(lat, 99), 3), "max_ms": round(lat[-1], 3),
        "service_p50_ms": round(percentile(svc, 50), 3), "service_p99_ms": round(percentile(svc, 99), 3),
        "service_max_ms": round(svc[-1], 3),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / n, 3),
    }


def processed(port: int, outcome: str | None = "processed") -> float:
    """Events the worker has handled (of one outcome, or of any when ``outcome`` is None)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "streamseg_events_total" and outcome in (None, s.labels.get("outcome")))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (robust to a busy machine, unlike latency)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("worker never became ready")


def known_customers(redis_url: str, prefix: str, limit: int = 5000) -> list[str]:
    keys = Keys(prefix)
    client = redis.Redis.from_url(redis_url)
    found = [keys.customer_of(k.decode()) for k in client.scan_iter(keys.customer_pattern(), count=1000)]
    client.close()
    return found[:limit]


class Bench:
    def __init__(self, st: DevStack, args: argparse.Namespace) -> None:
        self.st, self.args = st, args
        self.worker_port = 0  # whose processed-events counter the phases report
        self.env = {**os.environ, **st.client_env,
                     "STREAMSEG_LOG_LEVEL": "warn",
                    "STREAMSEG_API_TOKENS": f"bench:{TOKEN}"}

    def worker(self, port: int, in_thread: bool) -> ManagedProcess:
        env = {**self.env, "STREAMSEG_WEB_PORT": str(port),
               "STREAMSEG_WEB_IN_THREAD": str(in_thread).lower()}
        w = ManagedProcess(f"worker-{port}", [sys.executable, "-m", "streamseg", "worker"],
                           self.st.dir / f"worker-{port}.log", env).start()
        self.st.processes.append(w)
        wait_for_port(port, 60, w.proc)
        return w

    def cpu_by_process(self) -> dict[str, float]:
        out = {}
        for p in self.st.processes:
            if p.proc is not None and p.proc.poll() is None:
                with contextlib.suppress(OSError):  # exited meanwhile
                    out[p.name] = cpu_seconds(p.proc.pid)
        return out

    def api_server(self, port: int, **env: str) -> ManagedProcess:
        a = ManagedProcess(f"api-{port}", [sys.executable, "-m", "streamseg", "api", "--port",
                                           str(port)], self.st.dir / f"api-{port}.log",
                           {**self.env, **env})
        self.st.processes.append(a.start())
        wait_for_port(port, 60, a.proc)
        return a

    def generator(self, seed: int) -> ManagedProcess:
        a = self.args
        g = ManagedProcess(f"generate-{seed}", [
            # ids past the seeded ones are new customers: real work, not duplicates
            sys.executable, "-m", "streamseg", "generate", "--customers", str(a.customers * 10),
            "--rate", str(a.event_rate), "--days", "60", "--seed", str(seed),
            "--duration", str(a.seconds * (3 + a.api_rounds * (2 if a.compare_slice else 1)
                                            + (2 * a.api_rounds if a.floor else 0)) + 60)], self.st.dir / f"generate-{seed}.log", self.env)
        self.st.processes.append(g.start())
        return g

    async def measure(self, worker: ManagedProcess, port: int, phase: Phase,
                      customers: list[str]) -> dict[str, Any]:
        keys = Keys("ss")

        def path() -> str | bytes:
            if phase.path == "valkey":  # the lookup's own read, straight to Valkey
                return hgetall_command(keys.state(random.choice(customers)))
            return (f"/v1/customers/{random.choice(customers)}" if phase.path == "customer"
                    else phase.path)
        assert worker.proc is not None
        before, t0 = processed(self.worker_port), time.monotonic()
        cpu0 = cpu_seconds(worker.proc.pid)
        every0 = self.cpu_by_process()
        if phase.path == "valkey":
            out = await open_loop(f"redis://127.0.0.1:{port}", path, self.args.rate, phase.seconds,
                                  protocol=_RespConn)
        else:
            out = await open_loop(f"http://127.0.0.1:{port}", path, self.args.rate, phase.seconds)
        out["worker_events_per_s"] = round((processed(self.worker_port) - before)
                                           / (time.monotonic() - t0), 1)
        out["server_cpu_ms_per_request"] = round(
            (cpu_seconds(worker.proc.pid) - cpu0) * 1000 / out["requests"], 3)
        out["load_average_1m"] = os.getloadavg()[0]
        spent = time.monotonic() - t0
        # who used the two cores meanwhile (% of one core; the client's own is client_cpu_ms)
        out["cpu_percent"] = {name: round((cpu - every0.get(name, 0.0)) * 100 / spent, 1)
                              for name, cpu in self.cpu_by_process().items()}
        print(f"{phase.name:9s} {json.dumps(out)}", flush=True)
        return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with DevStack(broker=args.broker) as st:
        bench = Bench(st, args)
        port = free_port()
        worker = bench.worker(port, in_thread=True)
        bench.worker_port = port
        # seed customers so there is something to look up, then let the worker go idle
        seed = subprocess.run([sys.executable, "-m", "streamseg", "generate", "--customers",
                               str(args.customers), "--days", "20", "--seed", "1"],
                              env=bench.env, capture_output=True, text=True, check=True)
        total = json.loads(seed.stdout.strip().splitlines()[-1])["events_produced"]
        while (done := processed(port, outcome=None)) < total:
            print(f"seeding: {done:.0f}/{total} events handled", end="\r", flush=True)
            await asyncio.sleep(1)
        wait_ready(port)
        customers = known_customers(st.redis_url, "ss")
        print(f"{len(customers)} customers stored, {total} seed events", flush=True)
        results["idle"] = await bench.measure(worker, port, Phase("idle", "customer", args.seconds), customers)
        bench.generator(seed=2)
        await asyncio.sleep(3)  # let the generator reach its pace
        results["busy"] = await bench.measure(worker, port, Phase("busy", "customer", args.seconds), customers)
        api_port = free_port()
        api = bench.api_server(api_port)
        wait_ready(api_port)
        plain = None
        if args.compare_slice:  # the same API with the kernel's default time slice, rounds interleaved
            plain_port = free_port()
            plain = bench.api_server(plain_port, STREAMSEG_API_SLICE_MS="0")
            wait_ready(plain_port)
        for n in range(1, args.api_rounds + 1):  # rounds back to back: the spread of the p99
            name = "api" if n == 1 else f"api-{n}"
            results[name] = await bench.measure(api, api_port, Phase(name, "customer", args.seconds),
                                                customers)
            if args.floor:
                # what a lookup is made of, each alone at the same rate right after the round:
                # the HTTP round trip to `streamseg api` (its /healthz reads nothing), and the
                # lookup's HGETALL sent by the client straight to Valkey. A lookup chains both.
                suffix = "" if n == 1 else f"-{n}"
                results[f"floor-http{suffix}"] = await bench.measure(
                    api, api_port, Phase(f"floor-http{suffix}", "/healthz", args.seconds), customers)
                results[f"floor-valkey{suffix}"] = await bench.measure(
                    st.process("valkey"), st.redis_port,
                    Phase(f"floor-valkey{suffix}", "valkey", args.seconds), customers)
            if plain is not None:
                name = "api-default-slice" + ("" if n == 1 else f"-{n}")
                results[name] = await bench.measure(plain, plain_port, Phase(name, "customer",
                                                                             args.seconds), customers)
        results["healthz"] = await bench.measure(worker, port, Phase("healthz", "/healthz",
                                                                     args.seconds), customers)

        if args.compare_main_loop:
            port2 = free_port()
            worker2 = bench.worker(port2, in_thread=False)  # joins the group: takes half the partitions
            wait_ready(port2)
            await asyncio.sleep(3)
            results["mainloop"] = await bench.measure(
                worker2, port2, Phase("mainloop", "customer", args.seconds), customers)
    return results


def markdown(results: dict[str, Any], args: argparse.Namespace, broker_name: str) -> str:
    """The phases' table; ``broker_name`` is the name the run was announced with."""
    rows = ["| phase | req/s | p50 ms | p95 ms | p99 ms | max ms | worker events/s | "
            "server CPU ms/req | broker CPU % | load avg | statuses |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        # Tansu's CPU grows with every record batch it holds (broker_floor.py, --broker tansu)
        broker = r.get("cpu_percent", {}).get("broker", "")
        rows.append(f"| {name} | {r['rate_achieved']} | {r['p50_ms']} | {r['p95_ms']} | "
                    f"{r['p99_ms']} | {r['max_ms']} | {r['worker_events_per_s']} | "
                    f"{r['server_cpu_ms_per_request']} | {broker} | {r['load_average_1m']:.1f} | "
                    f"{r['statuses']} |")
    verdicts = [f"{name} p99 {results[name]['p99_ms']} ms "
                f"{'meets' if results[name]['p99_ms'] <= TARGET_P99_MS else 'misses'} the "
                f"{TARGET_P99_MS:g} ms target" for name in ("busy", "api") if name in results]
    for label, pick in (("api", lambda n: not n.startswith("api-default-slice")),
                        ("api-default-slice", lambda n: n.startswith("api-default-slice"))):
        rounds = [r["p99_ms"] for name, r in results.items() if name.startswith("api") and pick(name)]
        if len(rounds) > 1:
            met = sum(p <= TARGET_P99_MS for p in rounds)
            verdicts.append(f"over {len(rounds)} {label} rounds p99 {min(rounds)}-{max(rounds)} ms "
                            f"(median {statistics.median(rounds)} ms), {met} of {len(rounds)} within "
                            f"{TARGET_P99_MS:g} ms")
    for label in ("floor-http", "floor-valkey"):
        rounds = [r["p99_ms"] for name, r in results.items() if name.startswith(label)]
        if rounds:
            verdicts.append(f"{label} p99 {min(rounds)}-{max(rounds)} ms over {len(rounds)} round(s)")
    return (f"# Lookup latency\n\nOn {broker_name}: `python load_tests/lookup_bench.py "
            f"--broker {args.broker} --rate {args.rate:g} --seconds {args.seconds:g} "
            f"--event-rate {args.event_rate:g}"
            f"{f' --api-rounds {args.api_rounds}' if args.api_rounds != 1 else ''}"
            f"{' --compare-slice' if args.compare_slice else ''}"
            f"{' --floor' if args.floor else ''}"
            f"{' --compare-main-loop' if args.compare_main_loop else ''}`\n\n"
            + "\n".join(rows) + "\n\nWhile the worker processes events: " + "; ".join(verdicts)
            + " (busy: the worker's own API; api: `streamseg api`).\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_broker_argument(ap)
    ap.add_argument("--rate", type=float, default=1000.0, help="lookups per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="per phase")
    ap.add_argument("--customers", type=int, default=300, help="seeded customers to look up")
    ap.add_argument("--event-rate", type=float, default=1000.0, help="generator events/s while busy")
    ap.add_argument("--compare-main-loop", action="store_true")
    ap.add_argument("--api-rounds", type=int, default=1,
                    help="measure the stand-alone API this many times in a row (p99 spread)")
    ap.add_argument("--floor", action="store_true",
                    help="after the API rounds, measure a lookup's two parts alone at the same rate "
                    "and load: the stand-alone API's /healthz, and HGETALL straight to Valkey")
    ap.add_argument("--compare-slice", action="store_true",
                    help="interleave rounds of a second API process with the kernel's default "
                    "time slice (STREAMSEG_API_SLICE_MS=0)")
    args = ap.parse_args()
    broker_name = announce(args.broker)
    phases = asyncio.run(run(args))
    command = " ".join(["python", "load_tests/lookup_bench.py", *sys.argv[1:]])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lookup.json").write_text(
        json.dumps(stamped({**phases, "command": command}, args.broker), indent=2) + "\n")
    md = markdown(phases, args, broker_name)
    (RESULTS / "lookup.md").write_text(md)
    print(md)


if __name__ == "__main__":
    run_script(main)
