"""A tiny personalization service: one offer per customer, from the customer's segment.

It subscribes to streamseg's segment updates and catalog with
:class:`streamseg.client.SegmentSubscriber`, keeps the catalog and a
customer -> offer map in memory, and prints each decision as a JSON line:

    STREAMSEG_KAFKA_BOOTSTRAP=127.0.0.1:9092 python -m examples.offer_service --group offers

``{"customer_id": "c42", "segment_id": 3, "segment_name": "Bargain hunters", "offer": "20pct-coupon"}``
and, when a customer is erased, ``{"customer_id": "c42", "offer": null, "forgotten": true}``.
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
    """Decides offers from the items a subscriber yields."""

    def __init__(self) -> None:
        self.catalog: dict[int, CatalogEntry] = {}
        self.offers: dict[str, str] = {}

    def handle(self, item: Item) -> dict[str, object] | None:
        """Apply one item; returns the decision to announce, if any."""
        if isinstance(item, CatalogEntry):
            self.catalog[item.segment_id] = item
            return None
        if isinstance(item, Tombstone):
            if item.kind == "segment":
                self.catalog.pop(int(item.key), None)
                return None
            self.offers.pop(item.key, None)
            return {"customer_id": item.key, "offer": None, "forgotten": True}
        assert isinstance(item, SegmentUpdate)
        entry = self.catalog.get(item.segment_id)
        name = entry.name if entry else item.segment_name
        offer = choose_offer(name, entry.profile if entry else None)
        self.offers[item.customer_id] = offer
        return {"customer_id": item.customer_id, "segment_id": item.segment_id,
                "segment_name": name, "offer": offer}


async def run(settings: Settings, group: str) -> None:
    service = OfferService()
    async with SegmentSubscriber.from_settings(settings, group) as subscriber:
        async for item in subscriber:
            decision = service.handle(item)
            if decision is not None:
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
