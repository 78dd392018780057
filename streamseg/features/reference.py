"""A from-scratch recomputation of the feature accumulators from an event log.

The Redis script updates state incrementally, event by event; this module
computes the same fields in one batch pass over the accepted events, the way a
data scientist would in a notebook. Tests compare the two (and the property
tests lean on this to check order and duplication do not matter).

>>> from streamseg.events.models import TransactionEvent
>>> evs = [TransactionEvent.model_validate({"event_id": "o", "customer_id": "c", "ts": 1767225600000,
...        "amount": 10.0, "currency": "EUR"})] * 2
>>> accumulate(evs, horizon_ms=7 * 86_400_000, halflife_ms=30 * 86_400_000)["n_orders"]
1.0
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from streamseg.events.models import ClickEvent, Event, TransactionEvent
from streamseg.timeunits import DAY_MS

CLICK_COUNTER = {
    "page_view": "n_page_views", "product_view": "n_product_views", "search": "n_searches",
    "add_to_cart": "n_cart_adds", "remove_from_cart": "n_cart_removes",
    "checkout_start": "n_checkouts", "email_open": "n_email_opens",
    "email_click": "n_email_clicks", "login": "n_logins", "logout": "n_logouts",
    "wishlist_add": "n_wishlist_adds", "review": "n_reviews",
}
CLICK_DECAYED = {
    "page_view": "d_page_views", "product_view": "d_product_views", "add_to_cart": "d_cart_adds",
    "email_open": "d_email_opens", "email_click": "d_email_clicks",
}


def accepted(events: Iterable[Event], horizon_ms: float) -> list[Event]:
    """The events the store applies, in arrival order: first of each id, not late."""
    seen: set[str] = set()
    newest: float | None = None
    out: list[Event] = []
    for ev in events:
        if newest is not None and ev.ts_ms < newest - horizon_ms:
            continue
        if ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        newest = ev.ts_ms if newest is None else max(newest, ev.ts_ms)
        out.append(ev)
    return out


def accumulate(events: Iterable[Event], *, horizon_ms: float, halflife_ms: float) -> dict[str, float]:
    """The accumulator state (same field names as the Redis hash) of one customer."""
    evs = accepted(events, horizon_ms)
    if not evs:
        return {}
    last = max(e.ts_ms for e in evs)

    def w(ts: float) -> float:
        return 2.0 ** (-(last - ts) / halflife_ms)

    st: defaultdict[str, float] = defaultdict(float)
    st["first_ts"] = min(e.ts_ms for e in evs)
    st["last_ts"] = last
    st["n_active_days"] = len({int(e.ts_ms // DAY_MS) for e in evs})
    st["active_day"] = last // DAY_MS  # the newest active day, last_ts's (the script's fast path)
    cats: Counter[str] = Counter()
    sessions: dict[str, int] = {}
    for e in evs:
        st["n_events"] += 1
        st["d_events"] += w(e.ts_ms)
        if isinstance(e, TransactionEvent):
            if e.refund:
                st["n_refunds"] += 1
                st["refund_amount"] += e.amount
                st["d_spend"] -= e.amount * w(e.ts_ms)
                continue
            st["n_orders"] += 1
            st["sum_amount"] += e.amount
            st["sum_discount"] += e.discount_amount
            st["sum_items"] += e.items
            st["d_orders"] += w(e.ts_ms)
            st["d_spend"] += e.amount * w(e.ts_ms)
            cats.update(c for c in e.categories if c)
        else:
            assert isinstance(e, ClickEvent)
            st[CLICK_COUNTER[e.type]] += 1
            if e.type in CLICK_DECAYED:
                st[CLICK_DECAYED[e.type]] += w(e.ts_ms)
            if e.type in ("product_view", "add_to_cart") and e.category:
                cats[e.category] += 1
            sessions[e.session_id] = min(sessions.get(e.session_id, e.ts_ms), e.ts_ms)
    orders = [e.ts_ms for e in evs if isinstance(e, TransactionEvent) and not e.refund]
    if orders:
        st["last_purchase_ts"] = max(orders)
        st["first_purchase_ts"] = min(orders)
        days = {int(t // DAY_MS) for t in orders}
        st["n_purchase_days"] = len(days)
        st["first_day_amount"] = sum(e.amount for e in evs if isinstance(e, TransactionEvent)
                                     and not e.refund and int(e.ts_ms // DAY_MS) == min(days))
    if sessions:
        st["n_sessions"] = len(sessions)
        st["d_sessions"] = sum(w(t) for t in sessions.values())
    for cat, n in cats.items():
        st[f"c:{cat}"] = n
    if cats:
        st["cat_total"] = sum(cats.values())
        st["cat_top"] = max(cats.values())
    return {k: float(v) for k, v in st.items()}


def features(events: Iterable[Event], now_ms: float, *, horizon_ms: float,
             halflife_ms: float, never_days: float = 365.0) -> dict[str, float]:
    """Every registered feature straight from the event log, at ``now_ms``.

    Independent of the registry's ``derive`` and of the accumulators: each
    feature is written from its definition (weights ``2^-((now - t) / halflife)``
    with "now" never before the newest event, the same rule ``derive`` follows),
    so comparing the two checks the store, the accumulators and the registry at
    once.

    >>> from streamseg.events.models import TransactionEvent
    >>> day = 86_400_000
    >>> ev = TransactionEvent.model_validate({"event_id": "o", "customer_id": "c", "ts": 1767225600000,
    ...     "amount": 80.0, "currency": "EUR", "discount_amount": 20.0})
    >>> f = features([ev], 1767225600000 + 30 * day, horizon_ms=30 * day, halflife_ms=30 * day)
    >>> f["monetary_30d"], f["discount_share"], f["days_since_last_purchase"]
    (40.0, 0.2, 30.0)
    """
    evs = accepted(events, horizon_ms)
    ts = [e.ts_ms for e in evs]
    ref = max([now_ms, *ts])

    def w(t: float) -> float:
        return float(2.0 ** (-(ref - t) / halflife_ms))

    orders = [e for e in evs if isinstance(e, TransactionEvent) and not e.refund]
    refunds = [e for e in evs if isinstance(e, TransactionEvent) and e.refund]
    clicks = [e for e in evs if isinstance(e, ClickEvent)]

    def of_type(typ: str) -> list[ClickEvent]:
        return [c for c in clicks if c.type == typ]

    sessions: dict[str, int] = {}
    for c in clicks:
        sessions[c.session_id] = min(sessions.get(c.session_id, c.ts_ms), c.ts_ms)
    cats: Counter[str] = Counter(cat for o in orders for cat in o.categories if cat)
    cats.update(c.category for c in clicks
                if c.type in ("product_view", "add_to_cart") and c.category)
    amount = sum(o.amount for o in orders)
    discount = sum(o.discount_amount for o in orders)
    views = len(of_type("page_view")) + len(of_type("product_view"))
    carts, opens = len(of_type("add_to_cart")), len(of_type("email_open"))

    def since(t: float) -> float:
        return max(0.0, (now_ms - t) / DAY_MS)

    return {
        "days_since_last_activity": since(max(ts)) if ts else 0.0,
        "days_since_last_purchase": min(never_days, since(max(o.ts_ms for o in orders)))
        if orders else never_days,
        "purchase_frequency_30d": sum(w(o.ts_ms) for o in orders),
        "monetary_30d": max(0.0, sum(o.amount * w(o.ts_ms) for o in orders)
                            - sum(r.amount * w(r.ts_ms) for r in refunds)),
        "avg_order_value": amount / len(orders) if orders else 0.0,
        "discount_share": discount / (amount + discount) if amount + discount > 0 else 0.0,
        "refund_rate": min(1.0, len(refunds) / max(len(orders), 1)),
        "sessions_30d": sum(w(t) for t in sessions.values()),
        "page_views_30d": sum(w(c.ts_ms) for c in of_type("page_view")),
        "product_views_30d": sum(w(c.ts_ms) for c in of_type("product_view")),
        "cart_adds_30d": sum(w(c.ts_ms) for c in of_type("add_to_cart")),
        "pages_per_session": views / max(len(sessions), 1),
        "cart_conversion": len(orders) / max(len(orders), carts) if orders or carts else 0.0,
        "email_opens_30d": sum(w(c.ts_ms) for c in of_type("email_open")),
        "email_click_rate": min(1.0, len(of_type("email_click")) / opens) if opens else 0.0,
        "tenure_days": since(min(ts)) if ts else 0.0,
        "top_category_share": max(cats.values()) / sum(cats.values()) if cats else 0.0,
        "orders_total": float(len(orders)),
        "monetary_total": max(0.0, amount - sum(r.amount for r in refunds)),
        "sessions_total": float(len(sessions)),
        "events_total": float(len(evs)),
    }
