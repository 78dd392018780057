"""A tiny personalization service: one offer per customer, from the customer's segment.

It subscribes to streamseg's segment updates and catalog with
:class:`streamseg.client.SegmentSubscriber`, keeps the catalog and a
customer -> offer map in memory, and prints each decision as a JSON line:

    STREAMSEG_KAFKA_BOOTSTRAP=127.0.0.1:9092 python -m examples.offer_service --group offers

``{"customer_id": "c42", "segment_id": 3, "segment_name": "Bargain hunters", "offer": "20pct-coupon"}``
again whenever a catalog change alters a member's offer, and, when a customer
is erased, ``{"customer_id": "c42", "offer": null, "forgotten": true}``.
SIGTERM or Ctrl-C stops it cleanly (commits, leaves the group).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import orjson

from examples.offer_service.offers import choose_offer
from streamseg.client import Item, SegmentSubscriber, Tombstone
from streamseg.publish.records import CatalogEntry, SegmentUpdate
from streamseg.settings import Settings


class OfferService:
    """Decides offers from the items a subscriber yields.

    A customer's offer depends on their segment and on the segment's catalog
    entry, which may arrive before or after the customer's update (two
    topics): a new entry re-decides the offers of the segment's members.
    """

    def __init__(self) -> None:
        self.catalog: dict[int, CatalogEntry] = {}
        self.members: dict[str, SegmentUpdate] = {}
        self.offers: dict[str, str] = {}

    def handle(self, item: Item) -> list[dict[str, object]]:
        """Apply one item; returns the decisions to announce (offers that changed)."""
        if isinstance(item, Tombstone):
            return self._forget(item)
        if isinstance(item, CatalogEntry):
            self.catalog[item.segment_id] = item
            return [d for cid, m in self.members.items() if m.segment_id == item.segment_id
                    if (d := self._decide(m))]
        assert isinstance(item, SegmentUpdate)
        self.members[item.customer_id] = item
        decision = self._decide(item, always=True)
        return [decision] if decision else []

    def _decide(self, update: SegmentUpdate, always: bool = False) -> dict[str, object] | None:
        entry = self.catalog.get(update.segment_id)
        name = entry.name if entry else update.segment_name
        offer = choose_offer(name, entry.profile if entry else None)
        if not always and self.offers.get(update.customer_id) == offer:
            return None
        self.offers[update.customer_id] = offer
        return {"customer_id": update.customer_id, "segment_id": update.segment_id,
                "segment_name": name, "offer": offer}

    def _forget(self, item: Tombstone) -> list[dict[str, object]]:
        if item.kind == "segment":
            self.catalog.pop(int(item.key), None)
            return []
        self.members.pop(item.key, None)
        self.offers.pop(item.key, None)
        return [{"customer_id": item.key, "offer": None, "forgotten": True}]


async def run(settings: Settings, group: str) -> None:
    service = OfferService()
    async with SegmentSubscriber.from_settings(settings, group) as subscriber:
        async for item in subscriber:
            for decision in service.handle(item):
                sys.stdout.write(orjson.dumps(decision).decode() + "\n")
            sys.stdout.flush()


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--group", default="offer-service", help="Kafka consumer group")
    args = ap.parse_args(argv)
    task = asyncio.ensure_future(run(Settings(), args.group))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
