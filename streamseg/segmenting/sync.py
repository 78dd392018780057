"""One model across workers, through a compacted Kafka topic.

The model topic (``settings.topic_model``, one partition, compacted) holds:

- ``local:<worker id>``: each worker's own clusterer as data
  (:class:`~streamseg.segmenting.model.LocalSummary`, with the clusterer's
  JSON snapshot), published every ``model_sync_s``;
- ``global``: the merged, versioned :class:`SegmentModel` with stable ids.
- ``value``: the customer-value parameters (:class:`~streamseg.value.ValueParams`) the
  leader fitted at its latest refresh, which every worker scores customers with.

Every worker reads the whole topic from the start (no consumer group: each
needs every record) and keeps reading. At start-up it restores its own
clusterer from its last ``local:`` record (learning continues warm) and adopts
the latest ``global`` model (the same customers get the same ids), before its
agent processes anything. The Faust leader merges the fresh local summaries
into the next global version and publishes it and the segment catalog (see
:class:`streamseg.leader.Leader`, which takes :attr:`ModelSync.locals`). Only
JSON is read from Kafka; nothing is unpickled.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamseg.kafka_security import client_options, principal, start_client
from streamseg.publish.records import CatalogEntry
from streamseg.segmenting.base import Segmenter
from streamseg.segmenting.model import LocalSummary, SegmentModel

if TYPE_CHECKING:
    from streamseg.engine import Engine
    from streamseg.settings import Settings

log = logging.getLogger(__name__)
GLOBAL = b"global"
LOCAL = b"local:"
#: the customer-value parameters the leader fitted (streamseg.value), JSON ValueParams
VALUE_KEY = b"value"


def worker_id(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}:{settings.web_port}"


class ModelSync:
    """This worker's side of the model topic: follow it, adopt what it says, publish our summary."""

    def __init__(self, settings: Settings, engine: Engine,
                 restore: Callable[[dict[str, Any]], Segmenter]) -> None:
        self.settings = settings
        self.engine = engine
        self.restore = restore
        self.worker = worker_id(settings)
        self.locals: dict[str, LocalSummary] = {}
        self.loaded = asyncio.Event()  # the topic has been read up to its end once
        self._consumer: AIOKafkaConsumer | None = None

    # -- reading the topic ------------------------------------------------------------
    async def run(self) -> None:
        """Follow the model topic for ever (a Faust task)."""
        tp = TopicPartition(self.settings.topic_model, 0)
        security = client_options(self.settings)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_list,
                                    group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **security)
        await start_client(consumer, self.settings.kafka_bootstrap_list, security,
                           who=principal(self.settings))
        self._consumer = consumer
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                self._loaded(restored=False)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=500)
                for msg in batch.get(tp, []):
                    self.handle(msg.key, msg.value)
                if not self.loaded.is_set() and await consumer.position(tp) >= end:
                    self._loaded(restored=self.worker in self.locals)
        finally:
            await consumer.stop()

    def handle(self, key: bytes | None, value: bytes | None) -> None:
        if not key or value is None:
            return
        try:
            doc = orjson.loads(value)
            if key == GLOBAL:
                model = SegmentModel.from_json(doc)
                if self.engine.assigner.adopt(model):
                    log.info("adopted global model v%d (%d segments)", model.version, len(model.ids))
            elif key == VALUE_KEY:
                if self.engine.leader.value.adopt_json(value):
                    log.info("adopted customer-value parameters v%d",
                             self.engine.leader.value.params.version)  # type: ignore[union-attr]
            elif key.startswith(LOCAL):
                summary = LocalSummary.from_json(doc)
                self.locals[summary.worker] = summary
        except (ValueError, KeyError, TypeError) as exc:  # a bad record must not stop the worker
            log.error("ignoring unreadable model record %r: %s", key, exc)

    def _loaded(self, *, restored: bool) -> None:
        mine = self.locals.get(self.worker)
        if restored and mine is not None and mine.snapshot:
            try:
                self.engine.local.restore(self.restore(mine.snapshot))
                log.info("restored this worker's clusterer (%s) from the model topic", self.worker)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("cannot restore the clusterer, starting cold: %s", exc)
        self.loaded.set()

    # -- timers ------------------------------------------------------------------------
    async def publish_local(self) -> None:
        summary = self.engine.local.summary(self.worker)
        if summary is None:
            return
        self.locals[self.worker] = summary
        await self.engine.publisher.publish(
            [(self.settings.topic_model, LOCAL + self.worker.encode(), orjson.dumps(summary.to_json()))])

    async def load_profiles(self) -> None:
        """Every worker: profiles from the catalog, for explaining changes."""
        raw = await self.engine.store.catalog()
        profiles = {}
        for sid, doc in raw.items():
            entry = CatalogEntry.model_validate_json(doc)
            if entry.profile is not None:
                profiles[sid] = entry.profile
        if profiles:
            self.engine.assigner.set_profiles(profiles)
