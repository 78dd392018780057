"""The only module that builds Redis key names.

Every per-customer key carries the customer id as a hash tag, so all of one
customer's keys live in one Redis Cluster slot and a script may touch them
atomically.

>>> k = Keys("ss")
>>> k.state("c-1"), k.seen("c-1"), k.history("c-1")
('ss:{c-1}:f', 'ss:{c-1}:e', 'ss:{c-1}:h')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def state(self, customer_id: str) -> str:
        """Hash: feature accumulators and current membership of one customer."""
        return f"{self.prefix}:{{{customer_id}}}:f"

    def seen(self, customer_id: str) -> str:
        """Sorted set: event ids and session ids seen, scored by event time."""
        return f"{self.prefix}:{{{customer_id}}}:e"

    def history(self, customer_id: str) -> str:
        """List: the customer's latest segment changes, newest first (``STREAMSEG_CUSTOMER_HISTORY``).

        Each entry is compact JSON ``[ts_ms, from|null, to, model_version, cause|null]``.
        """
        return f"{self.prefix}:{{{customer_id}}}:h"

    def erasing(self, customer_id: str) -> str:
        """Hash: what an erasure removed, kept until its audit record is published.

        An erasure whose tombstones or audit record could not be published is
        retried; by then the customer's keys are gone, and this is what lets the
        retry's audit record still say what was removed.
        """
        return f"{self.prefix}:{{{customer_id}}}:x"

    def segment_sizes(self) -> str:
        """Hash: segment id -> number of customers currently in it."""
        return f"{self.prefix}:segments:sizes"

    def segment_sizes_at(self, tag: str) -> str:
        """Hash: segment id -> customers in it, of the cluster slot ``tag`` hashes to.

        On Redis Cluster the sizes are counted per slot (summed on read), so the
        membership script changes a customer and its counter in one slot.
        """
        return f"{self.prefix}:{{{tag}}}:sizes"

    def scored_at(self, tag: str) -> str:
        """Sorted set: :meth:`scored` for the customers of one bucket of slots (Redis Cluster)."""
        return f"{self.prefix}:{{{tag}}}:scored"

    def held_at(self, tag: str) -> str:
        """Set: :meth:`held` for the customers of one bucket of slots (Redis Cluster)."""
        return f"{self.prefix}:{{{tag}}}:held"

    def scored(self) -> str:
        """Sorted set: customer id -> event time (ms) its segment was last evaluated at.

        Recency features change while a customer is silent, so the re-scoring
        sweep (:mod:`streamseg.rescore`) reads the oldest entries from here.
        """
        return f"{self.prefix}:customers:scored"

    def held(self) -> str:
        """Set: customers whose events were applied before any model existed, not yet assigned.

        Held customers' offsets are acknowledged with the batch, so the set (not a
        worker's memory) is what guarantees they get a segment: any worker with a
        model assigns them (see ``Engine.flush_pending``).
        """
        return f"{self.prefix}:customers:held"

    def catalog(self) -> str:
        """Hash: segment id -> JSON :class:`~streamseg.publish.records.CatalogEntry`."""
        return f"{self.prefix}:segments:catalog"

    def value_params(self) -> str:
        """String: the customer-value model's parameters (JSON :class:`~streamseg.value.ValueParams`),
        as the leader last fitted them, for readers outside the workers."""
        return f"{self.prefix}:value:params"

    def drift(self, window: str) -> str:
        """List: the latest drift reports (JSON) of one window length, newest first.

        Kept by the workers that publish them (the newest
        :data:`streamseg.drift.timers.DRIFT_KEPT` of all workers together), for
        readers without a Kafka consumer (``GET /v1/drift``).
        """
        return f"{self.prefix}:drift:{window}"

    def workers(self) -> str:
        """Hash: worker id -> JSON ``{"clock_ms", "model_version", "at_ms"}``, refreshed each second.

        What a process outside the workers (``streamseg api``) needs to answer as
        a worker would: the engine's clock (event time on a replay) and the
        model version in use.
        """
        return f"{self.prefix}:workers"

    def customer_pattern(self) -> str:
        """SCAN pattern matching every customer's state hash."""
        return f"{self.prefix}:{{*}}:f"

    def customer_of(self, state_key: str) -> str:
        """Inverse of :meth:`state`."""
        return state_key[len(self.prefix) + 2 : -3]
