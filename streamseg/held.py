"""Customers held back until the first global model arrives.

Before any model exists a worker cannot assign anyone, yet it acknowledges
their events. It keeps each customer's newest row in memory and adds the
customer to the store's held set, so the customer gets a segment once a model
arrives: from memory, or (if this worker stopped meanwhile) from the set.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamseg.features.registry import derive, model_input
from streamseg.features.store import FeatureStore
from streamseg.retry import Retrier
from streamseg.segmenting.assign import Row


class HeldBack:
    """Rows waiting for a model, here and in the store's held set.

    >>> held = HeldBack(store=None, retry=None)  # type: ignore[arg-type]
    >>> held.hold(Row("c1", {}, {}, ts=1, prev=None, again=True))
    >>> held.hold(Row("c1", {}, {}, ts=2, prev=None))  # the newest row, the redelivery mark sticks
    >>> [(r.ts, r.again) for r in held.merge([])]
    [(2, True)]
    """

    def __init__(self, store: FeatureStore, retry: Retrier) -> None:
        self.store = store
        self.retry = retry
        self._rows: dict[str, Row] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, customer_id: object) -> bool:
        return customer_id in self._rows

    def hold(self, row: Row) -> None:
        """Keep a customer's newest row until there is a model; a redelivery mark sticks."""
        held = self._rows.get(row.cid)
        row.again = row.again or (held is not None and held.again)
        self._rows[row.cid] = row

    def forget(self, customer_id: str) -> None:
        """Drop an erased customer's row."""
        self._rows.pop(customer_id, None)

    def merge(self, rows: list[Row]) -> list[Row]:
        """The rows to assign now a model exists: these plus everyone held (who then are not)."""
        if not self._rows:
            return rows
        for r in rows:
            self.hold(r)
        out = list(self._rows.values())
        self._rows.clear()
        return out

    async def persist(self, customer_ids: Iterable[str]) -> None:
        """Add customers to the store's held set (they have no segment and no model yet)."""
        await self.retry(lambda: self.store.hold(list(customer_ids)), "holding customers")

    async def gather(self, limit: int, now: float) -> tuple[list[Row], list[str]]:
        """Rows to assign (held here, then up to ``limit`` from the store's held set, still
        unassigned) and the ids to release from the set once they are assigned."""
        rows = list(self._rows.values())
        ids = await self.retry(lambda: self.store.held(limit), "reading held customers")
        mine = {r.cid for r in rows}
        others = [c for c in ids if c not in mine]
        if others:
            states = await self.retry(lambda: self.store.states(others), "reading held customers")
            for cid, st in zip(others, states, strict=True):
                if st and not isinstance(st.get("seg"), float):  # expired or assigned: skip
                    feats = derive(st, now)
                    rows.append(Row(cid, model_input(feats), feats,
                                    int(float(st.get("last_ts", now))), None))
        return rows, sorted(mine | set(ids))

    async def release(self, customer_ids: list[str]) -> None:
        """They have a segment now: out of the store's held set and out of memory."""
        await self.retry(lambda: self.store.release(customer_ids), "releasing customers")
        self._rows.clear()
