"""Kafka client security (TLS, client certificates, SASL PLAIN and SCRAM), in one place.

Every Kafka client streamseg builds takes its security options from here: the
aiokafka producers, consumers, admin clients and the broker probe through
:func:`client_options`, Faust's own consumer and producer through
:func:`faust_credentials`. So the worker, ``streamseg api``, ``generate``,
``replay``, ``forget`` and :class:`streamseg.client.SegmentSubscriber` all
reach a secured cluster with the same ``STREAMSEG_KAFKA_*`` settings (see
``docs/security.md``).

A broker that refuses a client -- wrong password, untrusted certificate,
missing ACL -- refuses it again on every retry. :func:`access_denied` turns
such an error into :class:`KafkaAccessDenied`, one sentence saying what was
refused and which setting or ACL to look at, and the commands end with it
instead of retrying. aiokafka hides why it could not bootstrap (a failed SASL
handshake becomes "Unable to bootstrap from ..."), so :func:`check_access`
makes one connection of its own to find out, and asks the broker whether this
client may see the topics and consumer group it is about to use.

>>> client_options(Settings())
{'security_protocol': 'PLAINTEXT'}
>>> opts = client_options(Settings(kafka_security_protocol="SASL_PLAINTEXT",
...     kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="svc",
...     kafka_sasl_password="s3cret"))
>>> opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]
('SCRAM-SHA-512', 'svc', 's3cret')
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import errors as kerrors
from aiokafka.helpers import create_ssl_context

from streamseg.errors import AccessRefused, BrokerUnavailable, ConfigError
from streamseg.settings import Settings

log = logging.getLogger(__name__)

#: The aiokafka keyword arguments :func:`client_options` may return (and
#: :class:`~streamseg.client.SegmentSubscriber` accepts).
OPTION_NAMES = frozenset({"security_protocol", "ssl_context", "sasl_mechanism",
                          "sasl_plain_username", "sasl_plain_password"})
#: How long :func:`check_access` waits for a broker to answer.
CHECK_TIMEOUT_S = 10.0


class KafkaAccessDenied(AccessRefused):
    """The Kafka cluster refused this client: authentication, TLS or a missing ACL.

    Retrying cannot help; the message says what was refused and what to check.
    """


class KafkaTlsFilesError(ConfigError):
    """The CA, client certificate or key of the settings cannot be loaded."""


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of ``settings``: their CA (else the system's), their client certificate.

    Always verifies the broker's certificate and host name. A file that cannot
    be loaded, or a wrong key password, is a :class:`KafkaTlsFilesError` (a
    :class:`~streamseg.errors.ConfigError`) naming the setting.
    """
    cafile, certfile = settings.kafka_ssl_cafile, settings.kafka_ssl_certfile
    keyfile = settings.kafka_ssl_keyfile
    try:
        context = create_ssl_context(cafile=cafile or None)
    except (ssl.SSLError, OSError) as exc:
        raise KafkaTlsFilesError(f"STREAMSEG_KAFKA_SSL_CAFILE={cafile} holds no usable CA "
                                 f"certificate (OpenSSL: {_reason(exc)})") from None
    if not certfile:
        return context
    password = settings.kafka_ssl_key_password.get_secret_value()
    try:
        # as aiokafka's create_ssl_context does, but never with password=None: for an
        # encrypted key OpenSSL would then ask for the pass phrase on the terminal
        context.load_cert_chain(certfile=certfile, keyfile=keyfile or None, password=password)
    except (ssl.SSLError, OSError) as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            raise KafkaTlsFilesError(f"STREAMSEG_KAFKA_SSL_KEYFILE={keyfile} is not the key of "
                                     f"STREAMSEG_KAFKA_SSL_CERTFILE={certfile}") from None
        hint = ("wrong STREAMSEG_KAFKA_SSL_KEY_PASSWORD" if password else
                "an encrypted key needs STREAMSEG_KAFKA_SSL_KEY_PASSWORD")
        raise KafkaTlsFilesError(f"cannot load the Kafka client certificate {certfile} / key "
                                 f"{keyfile or '(in the certificate file)'}: not PEM, or {hint} "
                                 f"(OpenSSL: {_reason(exc)})") from None
    return context


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc)


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the security settings, for every client streamseg builds."""
    opts: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_uses_tls:
        opts["ssl_context"] = ssl_context(settings)
    if settings.kafka_uses_sasl:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return opts


def producer_options(settings: Settings) -> dict[str, Any]:
    """aiokafka producer arguments: acks from every in-sync replica, idempotence where the
    broker supports it (``kafka_idempotence``), and the security options."""
    return {"acks": "all", "enable_idempotence": settings.kafka_idempotence,
            **client_options(settings)}


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App``: None for PLAINTEXT.

    Faust (``credentials_to_aiokafka_auth``) hands the protocol, the SSL
    context, the mechanism (SCRAM-SHA-256/512 too) and user and password of
    these to every aiokafka client it builds.
    """
    import faust

    if settings.kafka_uses_sasl:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=ssl_context(settings) if settings.kafka_uses_tls else None,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if settings.kafka_uses_tls:
        return faust.SSLCredentials(ssl_context(settings))
    return None


def error_options(settings: Settings) -> dict[str, Any]:
    """What :func:`access_denied` reads of the options (no TLS context is built)."""
    opts: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_uses_sasl:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
    return opts


def settings_access_denied(settings: Settings, exc: BaseException) -> AccessRefused | None:
    """:func:`access_denied` for a client built from ``settings``."""
    return access_denied(exc, error_options(settings), who=principal(settings))


def kafka_unreachable(settings: Settings) -> BrokerUnavailable:
    """The error for a cluster that did not answer: where we looked and what to check."""
    secured = settings.kafka_security_protocol != "PLAINTEXT"
    return BrokerUnavailable(
        f"cannot reach Kafka at {settings.kafka_bootstrap}: check STREAMSEG_KAFKA_BOOTSTRAP"
        + ("" if secured else " (and STREAMSEG_KAFKA_SECURITY_PROTOCOL if the cluster is secured)")
        + " and that the brokers are running")


def principal(settings: Settings) -> str:
    """Who the broker sees, for error messages: the SASL user or the client certificate."""
    if settings.kafka_uses_sasl:
        return f"User:{settings.kafka_sasl_username}"
    if settings.kafka_uses_tls and settings.kafka_ssl_certfile:
        return f"the client certificate {certificate_subject(settings.kafka_ssl_certfile)}"
    return "User:ANONYMOUS"


def certificate_subject(path: str) -> str:
    """``CN=...,O=...`` of the first certificate in a PEM file (the path if unreadable)."""
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
        parts = [f"{_SHORT.get(k, k)}={v}" for rdn in reversed(decoded["subject"]) for k, v in rdn]
        return ",".join(parts) or path
    except Exception:  # a private CPython helper: a nicety, never a failure
        return path


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
          "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


def _principal_of(options: Mapping[str, Any]) -> str:
    if options.get("sasl_plain_username"):
        return f"User:{options['sasl_plain_username']}"
    if options.get("security_protocol") == "SSL":
        return "this client's certificate"
    return "User:ANONYMOUS"


def _topics(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    names = sorted(arg) if isinstance(arg, set | frozenset | list | tuple) else [str(arg)]
    names = [n for n in names if n]
    return ", ".join(names) or "?"


_AUTHENTICATION = (kerrors.SaslAuthenticationFailed, kerrors.AuthenticationFailedError,
                   kerrors.IllegalSaslStateError, kerrors.AuthenticationMethodNotSupported)
_CLIENT_CERT_REFUSED = ("SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                        "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                        "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_CERTIFICATE_EXPIRED")


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 8:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def access_denied(exc: BaseException, options: Mapping[str, Any], *, where: str = "",
                  who: str | None = None) -> AccessRefused | None:
    """``exc`` (or its cause) as a :class:`KafkaAccessDenied` if the cluster refused this client
    (or the :class:`~streamseg.errors.StoreRefused` Redis raised for the same reason).

    None for anything a retry may cure (an unreachable broker, a timeout, a
    leader election). ``options`` are the client's aiokafka security options,
    ``where`` the broker address, ``who`` how to name the client's principal.
    """
    who = who or _principal_of(options)
    at = f" at {where}" if where else ""
    protocol = options.get("security_protocol", "PLAINTEXT")
    for err in _chain(exc):
        if isinstance(err, AccessRefused):
            return err
        if isinstance(err, _AUTHENTICATION):
            detail = str(err.args[0]) if err.args and isinstance(err.args[0], str) else str(err)
            return KafkaAccessDenied(
                f"Kafka{at} rejected the credentials of {who} "
                f"({options.get('sasl_mechanism')} over {protocol}): {detail.strip() or type(err).__name__}; "
                "check STREAMSEG_KAFKA_SASL_USERNAME, STREAMSEG_KAFKA_SASL_PASSWORD and "
                "STREAMSEG_KAFKA_SASL_MECHANISM")
        if isinstance(err, kerrors.UnsupportedSaslMechanismError):
            said = err.args[0] if err.args and isinstance(err.args[0], str) else "refused"
            return KafkaAccessDenied(f"Kafka{at} does not accept SASL mechanism "
                                     f"{options.get('sasl_mechanism')} ({said}); check "
                                     "STREAMSEG_KAFKA_SASL_MECHANISM")
        if isinstance(err, kerrors.TopicAuthorizationFailedError):
            return KafkaAccessDenied(
                f"Kafka{at} denied {who} access to topic {_topics(err)} "
                "(TOPIC_AUTHORIZATION_FAILED): an ACL is missing; docs/security.md lists the ACLs "
                "each command needs")
        if isinstance(err, kerrors.GroupAuthorizationFailedError):
            return KafkaAccessDenied(
                f"Kafka{at} denied {who} access to consumer group {_topics(err)} "
                "(GROUP_AUTHORIZATION_FAILED): an ACL is missing; docs/security.md lists the ACLs "
                "each command needs")
        if isinstance(err, kerrors.ClusterAuthorizationFailedError | kerrors.TransactionalIdAuthorizationFailed):
            return KafkaAccessDenied(
                f"Kafka{at} denied {who} a cluster operation ({type(err).__name__}): an ACL is "
                "missing; docs/security.md lists the ACLs each command needs")
        if isinstance(err, ssl.SSLCertVerificationError):
            return KafkaAccessDenied(
                f"TLS: the certificate of the Kafka broker{at} is not trusted "
                f"({err.verify_message or _reason(err)}); check STREAMSEG_KAFKA_SSL_CAFILE (the CA "
                "that signed the brokers' certificates) and that the bootstrap host name is one "
                "the certificate names")
        if isinstance(err, ssl.SSLError):
            reason = getattr(err, "reason", None) or ""
            if reason in _CLIENT_CERT_REFUSED:
                return KafkaAccessDenied(
                    f"TLS: the Kafka broker{at} refused this client's certificate ({reason}): it "
                    "wants a client certificate signed by a CA it trusts; check "
                    "STREAMSEG_KAFKA_SSL_CERTFILE and STREAMSEG_KAFKA_SSL_KEYFILE")
            if reason == "WRONG_VERSION_NUMBER":
                return KafkaAccessDenied(
                    f"TLS: the Kafka listener{at} does not speak TLS; check "
                    f"STREAMSEG_KAFKA_SECURITY_PROTOCOL (now {protocol}) and the port")
            # any other TLS error (an EOF while a broker restarts...) may pass: not ours to end
        if (isinstance(err, asyncio.IncompleteReadError) and (err.expected or 0) >> 16 == 0x1503
                and protocol in ("PLAINTEXT", "SASL_PLAINTEXT")):
            # the "size" of the answer was the head of a TLS alert record (0x15, version 3.x)
            return KafkaAccessDenied(
                f"the Kafka listener{at} speaks TLS but this client does not: set "
                f"STREAMSEG_KAFKA_SECURITY_PROTOCOL (now {protocol}) to SSL or SASL_SSL")
    return None


def is_access_error(exc: BaseException) -> bool:
    """True if ``exc`` (or its cause) is the cluster refusing this client: never worth a retry."""
    return access_denied(exc, {}) is not None


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start_client(client: _Startable, bootstrap: Sequence[str],
                       options: Mapping[str, Any], *, who: str | None = None) -> None:
    """``await client.start()``; if it cannot bootstrap, find out whether the cluster refused
    us (then raise :class:`KafkaAccessDenied`) or is just away (then the original error)."""
    quiet = _QuietBootstrap()
    logging.getLogger("aiokafka").addFilter(quiet)
    try:
        await client.start()
    except kerrors.KafkaConnectionError as exc:
        denied = access_denied(exc, options, who=who)
        if denied is None:
            try:
                await check_access(bootstrap, options, who=who)
            except KafkaAccessDenied as found:
                denied = found
        if denied is not None:
            raise denied from None
        raise
    finally:
        logging.getLogger("aiokafka").removeFilter(quiet)


class _QuietBootstrap(logging.Filter):
    """Drops aiokafka's "Unable connect to" while a client starts: its caller retries, and
    answers for a cluster that stays away in one line of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to")


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return (host.strip("[]") or address.strip(), int(port) if port.isdigit() else 9092)


async def check_access(bootstrap: Sequence[str], options: Mapping[str, Any], *,
                       topics: Iterable[str] = (), group: str | None = None,
                       who: str | None = None, timeout: float = CHECK_TIMEOUT_S) -> bool:
    """Connect to the first bootstrap broker that answers; raise :class:`KafkaAccessDenied` if
    it refuses this client (TLS, SASL) or may not show it ``topics`` or ``group`` (ACLs).

    Returns True once a broker accepted us, False when none could be reached
    (the caller's own retries and messages handle an absent cluster). Topics
    that do not exist yet are fine. Describe is what is checked: the lowest
    ACL a topic or group can grant, implied by Read, Write and the others.
    """
    from aiokafka.conn import create_conn
    from aiokafka.protocol.coordination import FindCoordinatorRequest
    from aiokafka.protocol.metadata import MetadataRequest

    wanted = sorted(set(topics))
    for address in bootstrap:
        host, port = _host_port(address)
        try:
            conn = await asyncio.wait_for(create_conn(
                host, port, client_id="streamseg-access-check",
                request_timeout_ms=int(timeout * 1000), **options), timeout)
        except (TimeoutError, OSError, kerrors.KafkaError) as exc:
            denied = access_denied(exc, options, where=address, who=who)
            if denied is not None:
                raise denied from None
            log.debug("access check: %s unreachable: %r", address, exc)
            continue
        try:
            if wanted:
                meta = await conn.send(MetadataRequest(wanted, allow_auto_topic_creation=False))
                refused = {t[1] for t in meta.topics
                           if kerrors.for_code(t[0]) is kerrors.TopicAuthorizationFailedError}
                if refused:
                    raise _denied(kerrors.TopicAuthorizationFailedError(refused), options,
                                  address, who)
            if group:
                found = await conn.send(FindCoordinatorRequest(group, 0))
                if kerrors.for_code(found.error_code) is kerrors.GroupAuthorizationFailedError:
                    raise _denied(kerrors.GroupAuthorizationFailedError(group), options, address, who)
        except (TimeoutError, kerrors.KafkaError, OSError) as exc:
            log.debug("access check: %s did not answer: %r", address, exc)
            continue
        finally:
            conn.close()
        return True
    return False


def _denied(exc: BaseException, options: Mapping[str, Any], where: str,
            who: str | None) -> AccessRefused:
    found = access_denied(exc, options, where=where, who=who)
    assert found is not None, exc
    return found


async def check_settings_access(settings: Settings, *, topics: Iterable[str] = (),
                                group: str | None = None,
                                options: Mapping[str, Any] | None = None) -> bool:
    """:func:`check_access` with the connection and security of ``settings`` (``options``:
    their :func:`client_options`, if already built)."""
    return await check_access(settings.kafka_bootstrap_list,
                              client_options(settings) if options is None else options,
                              topics=topics, group=group, who=principal(settings))
