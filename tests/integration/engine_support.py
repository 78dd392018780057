"""What the in-process engine tests share: a store on the session's Valkey.

Their recording publisher is :class:`tests.support.Recorder`.
"""

from __future__ import annotations

from streamseg.features.keys import Keys
from streamseg.features.store import RedisFeatureStore
from streamseg.settings import Settings


def store_for(settings: Settings, cls: type[RedisFeatureStore] = RedisFeatureStore) -> RedisFeatureStore:
    return cls.from_url(settings.redis_url, Keys(settings.key_prefix),
                        dedup_horizon_days=settings.dedup_horizon_days,
                        retention_days=settings.retention_days)
