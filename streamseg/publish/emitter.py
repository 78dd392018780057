"""A batch's outputs: publish dead letters and segment updates, then record memberships.

The order is the delivery guarantee (docs/user-guide.md#delivery-guarantees):
a membership is written to the store only once its record is published, so a
crash in between republishes and Redis never holds what subscribers did not
see. Broker outages are retried (:class:`~streamseg.retry.Retrier`); a record
the broker refuses for good (:func:`~streamseg.retry.is_record_refused`) is
counted lost instead, so no output can stop or loop a worker.
"""

from __future__ import annotations

import logging

import orjson

from streamseg.events.models import parse_ts
from streamseg.features.store import FeatureStore, Membership
from streamseg.metrics import Metrics
from streamseg.publish.publisher import OutRecord, Publisher, taken_before
from streamseg.publish.records import DeadLetter, SegmentUpdate
from streamseg.retry import Retrier, is_record_refused
from streamseg.settings import Settings

log = logging.getLogger(__name__)


class Emitter:
    """Publishes a batch's records (awaited) and writes the memberships they announce."""

    def __init__(self, settings: Settings, store: FeatureStore, publisher: Publisher,
                 retry: Retrier, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.retry = retry
        self.metrics = metrics

    async def publish(self, dead: list[DeadLetter], changes: list[SegmentUpdate]) -> list[SegmentUpdate]:
        """Publish dead letters and changes; returns the changes the broker took.

        Outages are retried. A record the broker refuses for good (too large for
        its topic, say) cannot stop or loop the worker: the records then go one by
        one, and each refused one is logged and counted
        (``streamseg_outputs_lost_total``) instead.
        """
        records: list[OutRecord] = [(self.settings.topic_dlq, d.customer_id.encode() if d.customer_id
                                     else None, d.to_bytes()) for d in dead]
        records += [(self.settings.topic_segment_updates, c.customer_id.encode(), c.to_bytes())
                    for c in changes]
        if not records:
            return changes
        try:
            await self.retry(lambda: self.publisher.publish(records), "publishing")
            return changes
        except Exception as exc:
            if not is_record_refused(exc):
                raise
            already = taken_before(exc)  # sent again, a dead letter would be there twice
            log.error("the broker refused a record (%r); publishing the other %d of this "
                      "batch's %d records one by one", exc, len(records) - len(already),
                      len(records))
        taken = [i in already or await self._publish_one(r) for i, r in enumerate(records)]
        return [c for c, ok in zip(changes, taken[len(dead):], strict=True) if ok]

    async def _publish_one(self, record: OutRecord) -> bool:
        """Publish one record; False (logged, counted) if the broker refuses it for good."""
        try:
            await self.retry(lambda: self.publisher.publish([record]), "publishing")
            return True
        except Exception as exc:
            if not is_record_refused(exc):
                raise
            topic, _, value = record
            log.error("the broker refused a %d-byte record for %s for good (%r); dropped",
                      len(value or b""), topic, exc)
            self.metrics.outputs_lost.labels(topic).inc()
            return False

    async def record(self, changes: list[SegmentUpdate]) -> None:
        """Write published memberships to the store (re-tombstoning customers erased meanwhile)."""
        if changes:
            members = [Membership(c.customer_id, c.segment_id, c.previous_segment_id, c.distance,
                                  c.model_version, c.segment_name,
                                  orjson.dumps([r.model_dump() for r in c.reasons]),
                                  c.risk_band or "", parse_ts(c.event_ts),
                                  c.reasons[0].feature if c.reasons else None) for c in changes]
            written = await self.retry(lambda: self.store.write_memberships(members),
                                        "writing memberships")
            await self._correct_raced(changes, written.raced)
            erased = written.erased
            if erased:  # erased after their update was applied: the update published above must not
                log.info("%d customer(s) erased mid-batch; tombstoning their updates again", len(erased))
                await self.retry(lambda: self.publisher.publish(  # outlive the erasure's tombstone
                    [(self.settings.topic_segment_updates, cid.encode(), None) for cid in erased]),
                    "publishing tombstones")

    async def _correct_raced(self, changes: list[SegmentUpdate],
                             raced: dict[str, int | None]) -> None:
        """Republish changes whose customer another worker moved since this one read it.

        Two workers can evaluate one customer at once (customers held back until
        the first model; a producer that splits a customer's events across
        workers). The store's sizes stay exact either way; this makes the last
        record per customer say what Redis holds, with the true previous segment.
        """
        fixed = [c.model_copy(update={"previous_segment_id": raced[c.customer_id]})
                 for c in changes
                 if c.customer_id in raced and raced[c.customer_id] != c.segment_id]
        if fixed:
            log.info("%d customer(s) were moved by another worker meanwhile; republishing",
                     len(fixed))
            await self.retry(lambda: self.publisher.publish(
                [(self.settings.topic_segment_updates, c.customer_id.encode(), c.to_bytes())
                 for c in fixed]), "publishing corrected memberships")
