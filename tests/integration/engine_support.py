"""What the in-process engine tests share: a store on the session's Valkey, a recording publisher."""

from __future__ import annotations

from collections.abc import Sequence

from streamseg.engine import OutRecord
from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.settings import Settings


def store_for(settings: Settings, cls: type[RedisFeatureStore] = RedisFeatureStore) -> RedisFeatureStore:
    return cls.from_url(settings.redis_url, Keys(settings.key_prefix),
                        dedup_horizon_days=settings.dedup_horizon_days,
                        retention_days=settings.retention_days)


class Recorder:
    """A publisher that keeps what the engine would have sent to Kafka."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.records += records

    def updates(self, settings: Settings) -> int:
        return sum(topic == settings.topic_segment_updates for topic, _, _ in self.records)
