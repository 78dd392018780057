"""Kafka security: the settings' validation, the one options builder, what counts as a refusal.

No broker here (``tests/integration/test_secured_kafka.py`` has one): certificates
come from a throw-away CA (``openssl``), clients are inspected, not started.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import pytest
from aiokafka import errors as kerrors
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import SecretStr, ValidationError

from streamseg import cli
from streamseg.access_guard import AccessGuard
from streamseg.devstack.processes import free_port
from streamseg.kafka_security import (
    KafkaAccessDenied,
    KafkaTlsFilesError,
    access_denied,
    check_access,
    client_options,
    faust_credentials,
    is_access_error,
    principal,
    settings_access_denied,
    ssl_context,
)
from streamseg.retry import _is_transient
from streamseg.settings import Settings
from streamseg.topics import worker_topics
from tests.integration.test_secured_kafka import Pki

PASSWORD = "s3cret-password"


pytestmark = pytest.mark.usefixtures("clean_env")  # no STREAMSEG_* from the shell


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = Pki.create(tmp_path_factory.mktemp("pki"))
    pki.leaf("client", "streamseg-tls", password="key-pass")
    pki.leaf("plain", "plain-client")
    (pki.dir / "combined.pem").write_bytes((pki.dir / "plain.pem").read_bytes()
                                           + (pki.dir / "plain.key").read_bytes())
    return pki


def sasl_ssl(pki: Pki, **kw: Any) -> Settings:
    return Settings(**{"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
                       "kafka_sasl_username": "svc", "kafka_sasl_password": PASSWORD,
                       "kafka_ssl_cafile": str(pki.ca), **kw})


def mtls(pki: Pki, **kw: Any) -> Settings:
    return Settings(**{"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(pki.ca),
                       "kafka_ssl_certfile": str(pki.dir / "client.pem"),
                       "kafka_ssl_keyfile": str(pki.dir / "client.key"),
                       "kafka_ssl_key_password": "key-pass", **kw})


def problems(**kw: Any) -> str:
    with pytest.raises(ValidationError) as err:
        Settings(**kw)
    return str(err.value)


# --- settings ---------------------------------------------------------------------------------------


def test_defaults__plaintext_and_no_credentials() -> None:
    s = Settings()
    assert s.kafka_security_protocol == "PLAINTEXT" and not s.kafka_uses_tls and not s.kafka_uses_sasl
    assert client_options(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None
    assert principal(s) == "User:ANONYMOUS"


def test_env_vars__configure_sasl_ssl(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    monkeypatch.setenv("STREAMSEG_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMSEG_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("STREAMSEG_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("STREAMSEG_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("STREAMSEG_KAFKA_SSL_CAFILE", str(pki.ca))
    s = Settings()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert s.kafka_sasl_password.get_secret_value() == PASSWORD


def test_secrets__never_appear_in_repr_or_errors(pki: Pki) -> None:
    s = mtls(pki)
    assert "key-pass" not in repr(s) and "key-pass" not in str(s.model_dump())
    assert PASSWORD not in repr(sasl_ssl(pki))
    msg = problems(kafka_security_protocol="SASL_SSL", kafka_sasl_password=PASSWORD)
    assert PASSWORD not in msg


@pytest.mark.parametrize(("kw", "expected"), [
    ({"kafka_security_protocol": "SASL_SSL"},
     "SASL_SSL needs STREAMSEG_KAFKA_SASL_USERNAME"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "svc"},
     "SASL_PLAINTEXT needs STREAMSEG_KAFKA_SASL_PASSWORD"),
    ({"kafka_sasl_username": "svc", "kafka_sasl_password": "x"},
     "STREAMSEG_KAFKA_SASL_USERNAME/PASSWORD are set but STREAMSEG_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "svc",
      "kafka_sasl_password": "x", "kafka_ssl_cafile": "/etc/hosts"},
     "STREAMSEG_KAFKA_SSL_CAFILE is set but STREAMSEG_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does "
     "not use TLS"),
    ({"kafka_ssl_key_password": "x"}, "STREAMSEG_KAFKA_SSL_KEY_PASSWORD is set but"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"},
     "STREAMSEG_KAFKA_SSL_CAFILE: no such file: /no/such/ca.pem"),
    ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"},
     "kafka_sasl_mechanism"),
])
def test_contradictions__are_refused_naming_the_variables(kw: dict[str, Any], expected: str) -> None:
    assert expected in problems(**kw)


def test_client_certificate__needs_its_key_and_a_key_password_needs_a_certificate(pki: Pki) -> None:
    ssl_ = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(pki.ca)}
    assert "STREAMSEG_KAFKA_SSL_KEYFILE is set without STREAMSEG_KAFKA_SSL_CERTFILE" in problems(
        **ssl_, kafka_ssl_keyfile=str(pki.dir / "plain.key"))
    assert "STREAMSEG_KAFKA_SSL_CERTFILE holds no private key" in problems(
        **ssl_, kafka_ssl_certfile=str(pki.dir / "plain.pem"))
    assert "STREAMSEG_KAFKA_SSL_KEY_PASSWORD is set without a client certificate" in problems(
        **ssl_, kafka_ssl_key_password="x")
    # a certificate file that holds its key too is complete
    combined = Settings(**ssl_, kafka_ssl_certfile=str(pki.dir / "combined.pem"))
    assert isinstance(client_options(combined)["ssl_context"], ssl.SSLContext)


def test_cli__prints_invalid_settings_as_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STREAMSEG_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMSEG_KAFKA_SASL_PASSWORD", PASSWORD)
    assert cli.main(["generate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and PASSWORD not in err
    assert err.startswith("streamseg generate: invalid settings: "
                          "STREAMSEG_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs "
                          "STREAMSEG_KAFKA_SASL_USERNAME")


# --- the options builder -------------------------------------------------------------------------


def test_sasl_ssl_scram__options_carry_mechanism_credentials_and_a_verifying_context(pki: Pki) -> None:
    opts = client_options(sasl_ssl(pki))
    assert opts["security_protocol"] == "SASL_SSL"
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "svc", PASSWORD)
    ctx = opts["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "streamseg test ca"),),)]
    assert principal(sasl_ssl(pki)) == "User:svc"


def test_sasl_plaintext__has_no_tls_context() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc",
                 kafka_sasl_password=PASSWORD)
    assert client_options(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                                 "sasl_plain_username": "svc", "sasl_plain_password": PASSWORD}


def test_ssl_without_a_ca_file__trusts_the_system_store() -> None:
    ctx = client_options(Settings(kafka_security_protocol="SSL"))["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_mtls__loads_the_encrypted_client_key_with_its_password(pki: Pki) -> None:
    s = mtls(pki)
    opts = client_options(s)
    assert sorted(opts) == ["security_protocol", "ssl_context"] and opts["security_protocol"] == "SSL"
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    assert principal(s) == "the client certificate CN=streamseg-tls"


def test_mtls__a_wrong_or_missing_key_password_is_an_error_not_a_prompt(pki: Pki) -> None:
    started = time.monotonic()
    with pytest.raises(KafkaTlsFilesError, match="wrong STREAMSEG_KAFKA_SSL_KEY_PASSWORD"):
        ssl_context(mtls(pki, kafka_ssl_key_password="nope"))
    with pytest.raises(KafkaTlsFilesError, match="needs STREAMSEG_KAFKA_SSL_KEY_PASSWORD"):
        ssl_context(mtls(pki, kafka_ssl_key_password=""))
    assert time.monotonic() - started < 10  # OpenSSL asked nobody for a pass phrase


def test_mtls__a_key_of_another_certificate_is_named(pki: Pki) -> None:
    with pytest.raises(KafkaTlsFilesError, match="is not the key of STREAMSEG_KAFKA_SSL_CERTFILE"):
        ssl_context(mtls(pki, kafka_ssl_keyfile=str(pki.dir / "plain.key"),
                         kafka_ssl_key_password=""))


def test_a_ca_file_without_a_certificate__is_named(pki: Pki) -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(pki.dir / "plain.key"))
    with pytest.raises(KafkaTlsFilesError, match=r"STREAMSEG_KAFKA_SSL_CAFILE=.* holds no usable CA"):
        client_options(s)


def test_faust_credentials__pass_scram_sha_512_over_ssl_through_to_aiokafka(pki: Pki) -> None:
    """What Faust hands its own aiokafka clients (``credentials_to_aiokafka_auth``)."""
    creds = faust_credentials(sasl_ssl(pki))
    assert isinstance(creds, SASLCredentials)
    assert (creds.protocol, creds.mechanism) == (AuthProtocol.SASL_SSL, SASLMechanism.SCRAM_SHA_512)
    auth = credentials_to_aiokafka_auth(creds)
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": PASSWORD}
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_faust_credentials__sasl_plaintext_and_mtls(pki: Pki) -> None:
    plain = faust_credentials(Settings(kafka_security_protocol="SASL_PLAINTEXT",
                                       kafka_sasl_username="svc", kafka_sasl_password=PASSWORD))
    assert credentials_to_aiokafka_auth(plain) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "svc", "sasl_plain_password": PASSWORD, "ssl_context": None}
    tls = faust_credentials(mtls(pki))
    assert isinstance(tls, SSLCredentials)
    auth = credentials_to_aiokafka_auth(tls)
    assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)


def test_worker_app__gets_the_credentials(pki: Pki) -> None:
    from streamseg.app import create_app

    worker = create_app(sasl_ssl(pki, web_port=free_port(), sample_process=False))
    creds = worker.app.conf.broker_credentials
    assert isinstance(creds, SASLCredentials) and creds.username == "svc"
    assert worker.access.who == "User:svc"


def test_every_client__is_built_with_the_options(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriber, the publisher and the broker probe take the options; unknown ones fail."""
    from streamseg.api.health import BrokerProbe
    from streamseg.client import SegmentSubscriber

    s = sasl_ssl(pki)

    async def build() -> tuple[Any, Any]:
        sub = SegmentSubscriber.from_settings(s, "offers")
        client = sub._consumer._client
        assert (client._security_protocol, client._sasl_mechanism, client._sasl_plain_username) == (
            "SASL_SSL", "SCRAM-SHA-512", "svc")
        assert isinstance(client._ssl_context, ssl.SSLContext)
        from streamseg.publish.kafka import KafkaPublisher

        pub = KafkaPublisher(["k:9093"], client_options(s))
        assert pub._producer.client._security_protocol == "SASL_SSL"
        return sub, pub

    asyncio.run(build())
    assert BrokerProbe(["k:9093"], security=client_options(s)).security["sasl_plain_username"] == "svc"
    with pytest.raises(TypeError, match="unknown Kafka security option"):
        SegmentSubscriber("k:9093", "g", sasl_user="svc")


def test_worker_topics__include_fausts_leader_topic() -> None:
    s = Settings(app_id="acme")
    assert "acme-__assignor-__leader" in worker_topics(s)
    assert s.topic_clickstream in worker_topics(s)


# --- refusals ----------------------------------------------------------------------------------------

SCRAM = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
         "sasl_plain_username": "svc"}


def test_access_denied__a_failed_sasl_handshake_names_user_mechanism_and_settings() -> None:
    exc = kerrors.SaslAuthenticationFailed("Authentication failed due to invalid credentials")
    denied = access_denied(exc, SCRAM, where="k1:9096")
    assert isinstance(denied, KafkaAccessDenied)
    assert str(denied) == (
        "Kafka at k1:9096 rejected the credentials of User:svc (SCRAM-SHA-512 over SASL_SSL): "
        "Authentication failed due to invalid credentials; check STREAMSEG_KAFKA_SASL_USERNAME, "
        "STREAMSEG_KAFKA_SASL_PASSWORD and STREAMSEG_KAFKA_SASL_MECHANISM")


def test_access_denied__acls_name_the_topics_and_the_group() -> None:
    topics = access_denied(kerrors.TopicAuthorizationFailedError({"b.t", "a.t"}), SCRAM)
    assert "denied User:svc access to topic a.t, b.t (TOPIC_AUTHORIZATION_FAILED)" in str(topics)
    group = access_denied(kerrors.GroupAuthorizationFailedError("workers"), SCRAM)
    assert "denied User:svc access to consumer group workers (GROUP_AUTHORIZATION_FAILED)" in str(group)
    cluster = access_denied(kerrors.ClusterAuthorizationFailedError(), {}, who="x")
    assert "denied x a cluster operation" in str(cluster)


def test_access_denied__found_behind_a_wrapping_error() -> None:
    cause = kerrors.SaslAuthenticationFailed("bad password")
    wrapped = kerrors.KafkaConnectionError("Connection at k:9096 closed")
    wrapped.__cause__ = cause
    assert "rejected the credentials" in str(access_denied(wrapped, SCRAM))
    assert is_access_error(wrapped)


def test_access_denied__tls_failures() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    assert "is not trusted (unable to get local issuer certificate)" in str(
        access_denied(verify, {"security_protocol": "SSL"}))
    refused = ssl.SSLError(1, "sslv3 alert bad certificate")
    refused.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    assert "refused this client's certificate" in str(access_denied(refused, {}))
    alert = asyncio.IncompleteReadError(b"\x02\x02P", 0x15030300)
    assert "speaks TLS but this client does not" in str(
        access_denied(alert, {"security_protocol": "PLAINTEXT"}))


@pytest.mark.parametrize("exc", [
    kerrors.KafkaConnectionError("Unable to bootstrap from [...]"),
    kerrors.RequestTimedOutError(),
    ssl.SSLError(1, "unexpected eof while reading"),  # a broker going away mid-handshake
    kerrors.NotLeaderForPartitionError(),
    ConnectionRefusedError(),
    TimeoutError(),
    asyncio.IncompleteReadError(b"", 12),
])
def test_access_denied__not_for_what_a_retry_may_cure(exc: BaseException) -> None:
    assert access_denied(exc, SCRAM) is None
    assert not is_access_error(exc)


def test_engine__retries_kafka_errors_but_not_a_refusal() -> None:
    assert _is_transient(kerrors.RequestTimedOutError())
    assert not _is_transient(kerrors.TopicAuthorizationFailedError("t"))
    assert not _is_transient(kerrors.GroupAuthorizationFailedError("g"))


def test_settings_access_denied__names_the_certificate_subject(pki: Pki) -> None:
    denied = settings_access_denied(mtls(pki), kerrors.TopicAuthorizationFailedError("t"))
    assert "denied the client certificate CN=streamseg-tls access to topic t" in str(denied)


async def test_check_access__an_absent_cluster_is_not_a_refusal() -> None:
    started = time.monotonic()
    assert await check_access([f"127.0.0.1:{free_port()}"], {"security_protocol": "PLAINTEXT"},
                              topics=["t"], group="g", timeout=5) is False
    assert time.monotonic() - started < 5


def test_access_guard__stops_once_and_only_when_armed() -> None:
    guard = AccessGuard(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc",
                                 kafka_sasl_password=PASSWORD))
    refusal = kerrors.TopicAuthorizationFailedError("t")
    assert guard.stop_for(refusal) is False  # not run by `streamseg worker`: errors go their way
    stops: list[int] = []
    guard.stop = lambda: stops.append(1)
    assert guard.stop_for(kerrors.RequestTimedOutError()) is False
    assert guard.stop_for(refusal) and guard.stop_for(refusal)
    assert stops == [1]
    assert "denied User:svc access to topic t" in str(guard.denied)
    assert SecretStr(PASSWORD).get_secret_value() not in str(guard.denied)


def test_producers__wait_for_every_in_sync_replica_and_are_idempotent_unless_told_not() -> None:
    from streamseg.kafka_security import producer_options

    assert producer_options(Settings()).items() >= {"acks": "all", "enable_idempotence": True}.items()
    assert producer_options(Settings(kafka_idempotence=False))["enable_idempotence"] is False
