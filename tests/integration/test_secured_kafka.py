"""A secured Apache Kafka: SASL_SSL with SCRAM-SHA-512, mTLS, the standard authorizer.

One KRaft node, started here, listens on

- SASL_SSL (SCRAM-SHA-512; users added at format time with ``--add-scram``),
- SSL with ``ssl.client.auth=required`` (the client certificate's CN is the
  principal, through ``ssl.principal.mapping.rules``),
- PLAINTEXT for the controller and the inter-broker traffic, on loopback,

with certificates from a CA this module creates (``openssl``), the
``StandardAuthorizer`` on and no access without an ACL. ``User:admin`` (and
``ANONYMOUS``, the controller's and broker's own principal) are super users;
ACLs are created as admin through confluent-kafka over SASL_SSL, exactly the
set ``docs/security.md`` documents.

It proves that the worker, ``generate``, ``replay``, ``forget``, ``api`` and
``SegmentSubscriber`` work over both listeners, and that a wrong password, a
missing ACL or a refused certificate ends each command with one clear line and
exit status 1 within 30 s: no traceback, no hang, no retry loop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from streamseg.client import SegmentSubscriber
from streamseg.devstack.kafka import KafkaCluster
from streamseg.devstack.processes import ManagedProcess, free_port, valkey_binary, wait_for_port
from streamseg.kafka_security import KafkaAccessDenied, check_settings_access, client_options
from streamseg.publish.records import SegmentUpdate
from streamseg.settings import Settings
from streamseg.topics import ensure_topics
from tests.support import retry_transient

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-secret-0123"
PASSWORD = "streamseg-secret-0123"
KEY_PASSWORD = "client-key-pass"
API_TOKEN = "ops-token-0123456789abcdef"
#: the issue's bound for a refusal to end a command
REFUSAL_BOUND_S = 30.0


# --- a PKI of our own (openssl) ----------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()}")


@dataclass
class Pki:
    """A CA and leaf certificates signed by it, as PEM files in ``dir``."""

    dir: Path
    name: str = "ca"

    @property
    def ca(self) -> Path:
        return self.dir / f"{self.name}.pem"

    @classmethod
    def create(cls, directory: Path, name: str = "ca") -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=streamseg test {name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash", cwd=directory)
        return cls(directory, name)

    def leaf(self, name: str, cn: str, *, password: str | None = None) -> tuple[Path, Path]:
        """(certificate, key) for ``CN=cn``, valid for 127.0.0.1 and localhost; the key
        PKCS#8, encrypted with ``password`` if given."""
        d = self.dir
        (d / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.plain.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", self.ca.name, "-CAkey",
                 f"{self.name}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                 "-extfile", f"{name}.ext", cwd=d)
        if password:
            _openssl("pkcs8", "-topk8", "-in", f"{name}.plain.key", "-out", f"{name}.key",
                     "-v2", "aes-256-cbc", "-passout", f"pass:{password}", cwd=d)
        else:
            (d / f"{name}.key").write_bytes((d / f"{name}.plain.key").read_bytes())
        return d / f"{name}.pem", d / f"{name}.key"

    def keystore(self, name: str) -> Path:
        """Kafka's PEM keystore: the (unencrypted) key, then the certificate chain."""
        path = self.dir / f"{name}.keystore.pem"
        path.write_bytes(b"".join((self.dir / f).read_bytes()
                                  for f in (f"{name}.key", f"{name}.pem", self.ca.name)))
        return path


# --- the secured cluster -------------------------------------------------------------------------


@dataclass
class Secured:
    cluster: KafkaCluster
    pki: Pki
    rogue: Pki  # a CA the broker does not trust
    sasl_bootstrap: str
    ssl_bootstrap: str
    redis_url: str
    certs: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    log_dir: Path = Path()

    def admin(self) -> object:
        from confluent_kafka.admin import AdminClient

        return AdminClient({
            "bootstrap.servers": self.sasl_bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
            "sasl.password": ADMIN_PASSWORD, "ssl.ca.location": str(self.pki.ca)})

    def grant(self, principal: str, root: str, *, group_read: bool = True,
              write: bool = True) -> None:
        """The ACLs docs/security.md lists for a worker whose topics start with ``root.``, whose
        app id (consumer group) is ``root`` (subscriber groups ``root...``); without ``write``,
        READ only (no WRITE, no CREATE)."""
        from confluent_kafka.admin import (
            AclBinding,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        def allow(kind: ResourceType, name: str, pattern: ResourcePatternType,
                  op: AclOperation) -> AclBinding:
            return AclBinding(kind, name, pattern, principal, "*", op, AclPermissionType.ALLOW)

        topic, group = ResourceType.TOPIC, ResourceType.GROUP
        prefixed, literal = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
        ops = (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE) if write else (
            AclOperation.READ,)
        bindings = [allow(topic, f"{root}.", prefixed, op) for op in ops]
        bindings += [allow(topic, f"{root}-__assignor-__leader", literal, op)
                     for op in (AclOperation.READ, AclOperation.CREATE)[:2 if write else 1]]
        bindings.append(allow(group, root, prefixed,
                              AclOperation.READ if group_read else AclOperation.DESCRIBE))
        admin = self.admin()  # referenced until the results are in: its handle dies with it
        for future in admin.create_acls(bindings).values():  # type: ignore[attr-defined]
            future.result(timeout=30)


def _broker_config(pki: Pki, ports: dict[str, int]) -> dict[str, str]:
    sasl, ssl_, internal, ctl = ports["sasl"], ports["ssl"], ports["internal"], ports["controller"]
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl_},"
                     f"INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{ctl}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl_},"
                                f"INTERNAL://127.0.0.1:{internal}",
        "listener.security.protocol.map":
            "SASL_SSL:SASL_SSL,SSL:SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.ssl.ssl.client.auth": "required",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.keystore("broker")),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": "User:admin;User:ANONYMOUS",
    }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("secured-kafka")
    pki = Pki.create(base / "pki")
    pki.leaf("broker", "localhost")
    certs = {"client": pki.leaf("client", "streamseg-tls", password=KEY_PASSWORD),
             "stranger": pki.leaf("stranger", "stranger")}
    rogue = Pki.create(base / "rogue", "rogue")
    certs["rogue"] = rogue.leaf("intruder", "streamseg-tls")
    ports = {name: free_port() for name in ("sasl", "ssl", "internal", "controller")}
    scram = [f"SCRAM-SHA-512=[name={user},password={pw}]" for user, pw in (
        ("admin", ADMIN_PASSWORD), ("streamseg", PASSWORD), ("nobody", PASSWORD),
        ("member", PASSWORD))]
    cluster = KafkaCluster(base, nodes=1, extra=_broker_config(pki, ports),
                           ports=[(1, ports["sasl"], ports["controller"])],
                           format_args=[a for s in scram for a in ("--add-scram", s)])
    redis_port = free_port()
    valkey = ManagedProcess("valkey", [valkey_binary(), "--port", str(redis_port), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "no",
                                       "--dir", str(base)], base / "valkey.log")
    try:
        cluster.start()
        valkey.start()
        wait_for_port(redis_port, 30, valkey.proc)
        yield Secured(cluster, pki, rogue, f"127.0.0.1:{ports['sasl']}",
                      f"127.0.0.1:{ports['ssl']}", f"redis://127.0.0.1:{redis_port}/0", certs,
                      base)
    finally:
        valkey.stop()
        cluster.stop()


# --- settings, commands ----------------------------------------------------------------------------


def secured_settings(sec: Secured, via: str = "sasl", *, user: str = "streamseg",
                     password: str = PASSWORD, cert: str = "client", **overrides: object) -> Settings:
    """This test's own topics (``<root>.*``), group and key prefix (``<root>``), over SASL_SSL
    as ``user`` or over mTLS with the certificate ``cert``."""
    root = f"s{uuid.uuid4().hex[:8]}"
    names = {role: f"{root}.{role.replace('_', '-')}.v1" for role in (
        "clickstream", "transactions", "dlq", "segment_updates", "segments", "model", "drift",
        "audit")}
    if via == "sasl":
        security: dict[str, object] = dict(
            kafka_bootstrap=sec.sasl_bootstrap, kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=user,
            kafka_sasl_password=password, kafka_ssl_cafile=str(sec.pki.ca))
    else:
        certfile, keyfile = sec.certs[cert]
        security = dict(kafka_bootstrap=sec.ssl_bootstrap, kafka_security_protocol="SSL",
                        kafka_ssl_cafile=str(sec.pki.ca), kafka_ssl_certfile=str(certfile),
                        kafka_ssl_keyfile=str(keyfile),
                        kafka_ssl_key_password=KEY_PASSWORD if cert == "client" else "")
    base: dict[str, object] = dict(
        redis_url=sec.redis_url, app_id=root, key_prefix=root, web_port=free_port(),
        api_port=free_port(), model_sync_s=1.0, topic_partitions=2, n_segments=3,
        model_warmup=30, log_level="info", api_tokens=f"ops:{API_TOKEN}",
        **{f"topic_{role}": name for role, name in names.items()}, **security)
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def env_of(settings: Settings) -> dict[str, str]:
    """The environment of a child process with these settings, secrets included."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMSEG_")}
    for name, value in settings.model_dump().items():
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        env[f"STREAMSEG_{name.upper()}"] = text
    return env


@dataclass
class Ran:
    code: int
    output: str
    seconds: float


def run(settings: Settings, *args: str, timeout: float = 120.0) -> Ran:
    """``streamseg ARGS`` to its end, stdout and stderr together."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamseg", *args], env=env_of(settings),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    return Ran(done.returncode, done.stdout, time.monotonic() - started)


def start(settings: Settings, log_dir: Path, *args: str, port: int) -> ManagedProcess:
    """``streamseg ARGS`` in the background, once it serves ``port``."""
    name = f"{args[0]}-{settings.app_id}"
    proc = ManagedProcess(name, [sys.executable, "-m", "streamseg", *args],
                          log_dir / f"{name}.log", env_of(settings)).start()
    try:
        wait_for_port(port, 90, proc.proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def write_history(path: Path, customers: int, per_customer: int = 3) -> int:
    rows = ["customer_id,ts,amount,currency"]
    for c in range(customers):
        for i in range(per_customer):
            rows.append(f"c{c:04d},2026-01-{1 + i:02d}T{c % 24:02d}:00:00Z,{5 + (c * 7 + i) % 90}.5,EUR")  # the reporting currency
    path.write_text("\n".join(rows) + "\n")
    return customers * per_customer


def assert_refused(ran: Ran, prefix: str, *fragments: str) -> str:
    """Exit 1 within the bound, one line starting with ``prefix`` (holding ``fragments``),
    the last one, and no traceback."""
    ours = [line for line in ran.output.splitlines() if line.startswith(prefix)]
    tail = ran.output[-3000:]
    assert ran.code == 1, tail
    assert ran.seconds < REFUSAL_BOUND_S, f"took {ran.seconds:.1f}s: {tail}"
    assert "Traceback" not in ran.output, tail
    assert len(ours) == 1, tail
    assert ran.output.rstrip().splitlines()[-1] == ours[0], tail
    for fragment in fragments:
        assert fragment in ours[0], tail
    return ours[0]


async def granted(settings: Settings, timeout: float = 30.0) -> None:
    """Wait until the broker applies the ACLs just created (they propagate as metadata)."""
    await retry_transient(lambda _: check_settings_access(
        settings, topics=[settings.topic_clickstream], group=settings.app_id),
        timeout, (KafkaAccessDenied,), pause=0.2)


async def first_updates(settings: Settings, n: int, timeout: float = 120.0) -> list[SegmentUpdate]:
    """The first ``n`` segment updates, read with the subscriber client over the same listener."""
    out: list[SegmentUpdate] = []
    sub = SegmentSubscriber.from_settings(settings, f"{settings.app_id}-subscriber")

    async def take() -> None:
        async with sub:
            async for item in sub:
                if isinstance(item, SegmentUpdate):
                    out.append(item)
                    if len(out) >= n:
                        return

    await asyncio.wait_for(take(), timeout)
    return out


# --- it works ---------------------------------------------------------------------------------------


async def test_sasl_ssl_scram__worker_generate_and_subscriber_process_events_end_to_end(
    secured: Secured,
) -> None:
    settings = secured_settings(secured)
    secured.grant(f"User:{settings.kafka_sasl_username}", settings.app_id)
    await granted(settings)
    worker = start(settings, secured.log_dir, "worker", port=settings.web_port)
    try:
        gen = run(settings, "generate", "--customers", "150", "--days", "20", "--seed", "3")
        assert gen.code == 0, gen.output[-3000:]
        stats = orjson.loads(gen.output.strip().splitlines()[-1])
        assert stats["events_produced"] > 1000
        updates = await first_updates(settings, 20)
        assert len({u.customer_id for u in updates}) >= 10
        assert all(u.customer_id.startswith("c") for u in updates)
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{settings.web_port}/readyz") as resp:
            ready = await resp.json()
        assert ready["checks"]["broker"] is True, ready  # the worker's probe, over SASL_SSL
    finally:
        worker.stop()
    assert "Authenticated as streamseg via SCRAM-SHA-512" in worker.log_path.read_text()


async def test_mtls__worker_replay_forget_and_api_work_with_a_client_certificate(
    secured: Secured, tmp_path: Path,
) -> None:
    settings = secured_settings(secured, "ssl")
    secured.grant("User:streamseg-tls", settings.app_id)  # the certificate's CN, mapped
    await granted(settings)
    worker = start(settings, secured.log_dir, "worker", port=settings.web_port)
    try:
        rows = write_history(tmp_path / "orders.csv", customers=90)
        rep = run(settings, "replay", str(tmp_path / "orders.csv"), "--json", "--no-progress")
        assert rep.code == 0, rep.output[-3000:]
        assert orjson.loads(rep.output[rep.output.index("{"):])["produced"] == rows
        updates = await first_updates(settings, 10)
        target = updates[0].customer_id

        gone = run(settings, "forget", target, "--actor", "test")
        assert gone.code == 0, gone.output[-3000:]
        audit = orjson.loads(gone.output.strip().splitlines()[-1])
        assert audit["customer_id"] == target and audit["via"] == "cli"
        audits = await read_topic(settings, settings.topic_audit, 1)
        assert audits[0]["customer_id"] == target

        api = start(settings, secured.log_dir, "api", "--port", str(settings.api_port),
                    port=settings.api_port)
        try:
            base = f"http://127.0.0.1:{settings.api_port}"
            headers = {"Authorization": f"Bearer {API_TOKEN}"}
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/readyz") as resp:
                    ready = await resp.json()
                assert ready["checks"]["broker"] is True, ready  # the API's own probe, mTLS
                async with http.delete(f"{base}/v1/customers/{updates[1].customer_id}",
                                       headers=headers) as resp:
                    assert resp.status == 200, await resp.text()  # published over mTLS
        finally:
            api.stop()
        audits = await read_topic(settings, settings.topic_audit, 2)
        assert {a["customer_id"] for a in audits} == {target, updates[1].customer_id}
    finally:
        worker.stop()


async def read_topic(settings: Settings, topic: str, n: int, timeout: float = 60.0) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_list,
                                auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(orjson.loads(r.value) for r in records if r.value)
    finally:
        await consumer.stop()
    return out


# --- refusals: one line, exit 1, within 30 s -------------------------------------------------------

COMMANDS = ["worker", "generate", "replay", "forget", "api"]


def command(name: str, settings: Settings, tmp_path: Path) -> tuple[list[str], str]:
    """The arguments of a short run of ``name``, and the prefix of its error line."""
    if name == "generate":
        return ["generate", "--customers", "20", "--days", "2"], "streamseg generate: "
    if name == "replay":
        write_history(tmp_path / "h.csv", customers=3)
        return ["replay", str(tmp_path / "h.csv"), "--no-progress"], "streamseg replay: "
    if name == "forget":
        return ["forget", "c0001"], "erasure of 'c0001' failed: "
    if name == "api":
        return ["api", "--port", str(settings.api_port)], "streamseg api: "
    return ["worker"], "streamseg worker: "


@pytest.mark.parametrize("name", COMMANDS)
def test_wrong_password__ends_the_command_with_one_line(secured: Secured, tmp_path: Path,
                                                         name: str) -> None:
    settings = secured_settings(secured, password="not-the-password")
    args, prefix = command(name, settings, tmp_path)
    assert_refused(run(settings, *args), prefix, "rejected the credentials of User:streamseg",
                   "SCRAM-SHA-512 over SASL_SSL", "STREAMSEG_KAFKA_SASL_PASSWORD")


@pytest.mark.parametrize("name", COMMANDS)
def test_missing_acl__ends_the_command_with_one_line(secured: Secured, tmp_path: Path,
                                                     name: str) -> None:
    settings = secured_settings(secured, user="nobody")  # authenticates; no ACL names it
    args, prefix = command(name, settings, tmp_path)
    line = assert_refused(run(settings, *args), prefix, "denied User:nobody access to topic",
                          "TOPIC_AUTHORIZATION_FAILED")
    assert settings.topic_segment_updates in line or settings.topic_clickstream in line


def test_missing_group_read_acl__stops_the_worker_instead_of_waiting_to_join(
    secured: Secured,
) -> None:
    """Faust never looks at aiokafka's parked JoinGroup error: without the worker's own check
    it would wait for ever. Describe on the group passes the start-up check."""
    settings = secured_settings(secured, user="member")
    secured.grant("User:member", settings.app_id, group_read=False)
    asyncio.run(granted(settings))
    assert_refused(run(settings, "worker"), "streamseg worker: ",
                   f"denied User:member access to consumer group {settings.app_id}",
                   "GROUP_AUTHORIZATION_FAILED")


async def test_missing_write_acl__stops_the_worker_without_dead_lettering(secured: Secured) -> None:
    """READ but no WRITE: the start-up check passes (READ implies DESCRIBE); the first publish
    is refused. The engine used to retry it for ever; now the worker stops, and the batch is
    not dead-lettered (it comes again once the ACL is there)."""
    settings = secured_settings(secured, user="member")
    admin = settings.model_copy(update={"kafka_sasl_username": "admin",
                                        "kafka_sasl_password": SecretStr(ADMIN_PASSWORD)})
    await ensure_topics(admin)  # an operator's topics: the worker may not create them
    from confluent_kafka.admin import NewTopic

    client = secured.admin()
    for future in client.create_topics(  # type: ignore[attr-defined]
            [NewTopic(f"{settings.app_id}-__assignor-__leader", 1, 1)]).values():
        future.result(timeout=30)
    gen = run(admin, "generate", "--customers", "60", "--days", "10")
    assert gen.code == 0, gen.output[-3000:]
    secured.grant("User:member", settings.app_id, write=False)
    await granted(settings)
    ran = await asyncio.to_thread(run, settings, "worker")
    line = assert_refused(ran, "streamseg worker: ", "denied User:member access to topic",
                          "TOPIC_AUTHORIZATION_FAILED")
    assert any(t in line for t in (settings.topic_segment_updates, settings.topic_model,
                                   settings.topic_dlq, settings.topic_drift))
    assert "dead-lettering" not in ran.output and "retrying in" not in ran.output


@pytest.mark.parametrize("name", ["worker", "generate"])
def test_mtls_certificate_without_acls__ends_the_command_with_one_line(
    secured: Secured, tmp_path: Path, name: str,
) -> None:
    settings = secured_settings(secured, "ssl", cert="stranger")
    args, prefix = command(name, settings, tmp_path)
    assert_refused(run(settings, *args), prefix, "the client certificate CN=stranger",
                   "TOPIC_AUTHORIZATION_FAILED")


def test_mtls_without_a_client_certificate__is_refused_in_one_line(secured: Secured,
                                                                    tmp_path: Path) -> None:
    settings = secured_settings(secured, "ssl").model_copy(update={
        "kafka_ssl_certfile": "", "kafka_ssl_keyfile": "", "kafka_ssl_key_password": SecretStr("")})
    assert_refused(run(settings, "generate", "--customers", "5", "--days", "1"),
                   "streamseg generate: ", "refused this client's certificate",
                   "STREAMSEG_KAFKA_SSL_CERTFILE")


def test_certificate_from_an_unknown_ca__is_refused_in_one_line(secured: Secured) -> None:
    settings = secured_settings(secured, "ssl", cert="rogue")
    assert_refused(run(settings, "generate", "--customers", "5", "--days", "1"),
                   "streamseg generate: ", "refused this client's certificate")


def test_broker_certificate_from_an_untrusted_ca__is_refused_in_one_line(secured: Secured) -> None:
    settings = secured_settings(secured, kafka_ssl_cafile=str(secured.rogue.ca))
    assert_refused(run(settings, "generate", "--customers", "5", "--days", "1"),
                   "streamseg generate: ", "is not trusted", "STREAMSEG_KAFKA_SSL_CAFILE")


def test_plaintext_client_on_a_tls_listener__is_told_to_use_tls(secured: Secured) -> None:
    settings = secured_settings(secured).model_copy(update={
        "kafka_security_protocol": "PLAINTEXT", "kafka_sasl_username": "",
        "kafka_sasl_password": SecretStr(""), "kafka_ssl_cafile": ""})
    assert_refused(run(settings, "generate", "--customers", "5", "--days", "1"),
                   "streamseg generate: ", "speaks TLS", "SSL or SASL_SSL")
