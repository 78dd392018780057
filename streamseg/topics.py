"""The only module that declares topics: names come from settings, layout from here."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from streamseg.kafka_security import (
    KafkaAccessDenied,
    check_settings_access,
    client_options,
    kafka_unreachable,
    principal,
    start_client,
)
from streamseg.settings import Settings

log = logging.getLogger(__name__)

#: Kafka record header carrying an input record's event time (epoch ms, decimal ASCII):
#: ``streamseg replay`` sets it, the worker merges a fetch's partitions by it.
EVENT_TIME_HEADER = "streamseg-event-ts"


def replication(settings: Settings, brokers: int) -> int:
    """Replicas per topic: the setting, else min(3, brokers) (what a production cluster wants).

    >>> replication(Settings(), 1), replication(Settings(), 5), replication(Settings(topic_replication=2), 5)
    (1, 3, 2)
    """
    return settings.topic_replication or max(1, min(3, brokers))


def topic_specs(settings: Settings, brokers: int = 1) -> list[NewTopic]:
    """Every topic the engine reads or writes, with partitions and cleanup policy."""
    n, rf = settings.topic_partitions, replication(settings, brokers)
    return [
        NewTopic(settings.topic_clickstream, n, rf),
        NewTopic(settings.topic_transactions, n, rf),
        NewTopic(settings.topic_dlq, n, rf),
        # one record per customer matters (latest membership): compacted
        NewTopic(settings.topic_segment_updates, n, rf,
                 topic_configs={"cleanup.policy": "compact"}),
        # one record per segment id (latest catalog entry), one partition keeps them ordered
        NewTopic(settings.topic_segments, 1, rf, topic_configs={"cleanup.policy": "compact"}),
        # key "global" = the merged model, "local:<worker>" = each worker's own clusterer
        NewTopic(settings.topic_model, 1, rf, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(settings.topic_drift, 1, rf),  # a few reports per window: one partition keeps order
        # an audit trail must keep every record: never compacted
        NewTopic(settings.topic_audit, n, rf),
    ]


def worker_topics(settings: Settings) -> list[str]:
    """Every topic a worker uses: ours and Faust's leader-election topic."""
    return [*(t.name for t in topic_specs(settings)), f"{settings.app_id}-__assignor-__leader"]


async def ensure_topics(settings: Settings, *, check_access: bool = True) -> int:
    """Create whichever of our topics are missing; returns their replication factor.

    An unreachable cluster is tried a second apart for
    ``kafka_connect_timeout_s``, then :class:`~streamseg.errors.BrokerUnavailable`; one that
    refuses us (credentials, TLS, a missing ACL) ends it at once with
    :class:`~streamseg.kafka_security.KafkaAccessDenied`. On a secured cluster
    one connection of our own asks first (``check_access``; a caller that just
    did so passes False), so a refusal is reported before aiokafka logs its own
    version of it.
    """
    options = client_options(settings)
    who = principal(settings)
    if check_access and settings.kafka_security_protocol != "PLAINTEXT":
        await check_settings_access(settings, topics=[t.name for t in topic_specs(settings)],
                                    options=options)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list, **options)
    started = False
    try:
        deadline = time.monotonic() + settings.kafka_connect_timeout_s
        while not started:
            try:
                await start_client(admin, settings.kafka_bootstrap_list, options, who=who)
                started = True
            except KafkaConnectionError:
                if time.monotonic() + 1 > deadline:
                    raise kafka_unreachable(settings) from None
                await asyncio.sleep(1)
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        missing = [t for t in topic_specs(settings, brokers) if t.name not in existing]
        created = []
        for spec in missing:
            try:
                response = await admin.create_topics([spec])
            except TopicAlreadyExistsError:
                continue
            for name, code, *rest in getattr(response, "topic_errors", None) or [(spec.name, 0)]:
                error = for_code(code)
                if code == 0:
                    created.append(name)
                elif error is TopicAlreadyExistsError:
                    pass
                elif error in (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
                    raise KafkaAccessDenied(
                        f"Kafka denied {who} creating topic {name} ({error.__name__}): create "
                        "the topics beforehand or grant CREATE (docs/security.md)")
                else:
                    log.warning("could not create topic %s: %s %s", name, error.__name__,
                                rest[0] if rest and rest[0] else "")
        if created:
            log.info("created topics: %s", ", ".join(created))
        return replication(settings, brokers)
    finally:
        if started:
            await admin.close()
