"""The only module that declares topics: names come from settings, layout from here."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from streamseg.errors import ConfigError
from streamseg.settings import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic the engine reads or writes, with partitions and cleanup policy."""
    n, rf = settings.topic_partitions, settings.topic_replication
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


async def ensure_topics(settings: Settings, attempts: int = 30) -> list[str]:
    """Create whichever of our topics are missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == attempts - 1:
                raise ConfigError(
                    f"cannot reach Kafka at {settings.kafka_bootstrap}: "
                    "check STREAMSEG_KAFKA_BOOTSTRAP"
                ) from None
            await asyncio.sleep(1)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()
