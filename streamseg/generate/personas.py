"""Planted customer personas and a deterministic, lazy event simulator (pure, no I/O).

Each customer gets one persona (the ground truth the engine never sees) and draws
its own behaviour around the persona's parameters, so groups overlap a little but
stay separable on a few features of :mod:`streamseg.features.registry`.

A customer acts in *visits*: web sessions (``login``/``page_view``/``search``/
``product_view``/``add_to_cart``/``remove_from_cart``/``checkout_start``, then an
order for buyers) and e-mails (``email_open``, maybe ``email_click`` and a web
session under the same ``session_id``). Refunds follow orders by days.
:func:`simulate` merges the per-customer streams into one stream in event-time
order, holding only one pending visit per customer in memory.

>>> import itertools
>>> truth = assign_personas(3, seed=1)
>>> sorted(truth)
['c000000', 'c000001', 'c000002']
>>> evs = list(simulate(truth, days=30, end_ms=1_767_225_600_000, seed=1))
>>> all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(evs))
True
>>> sorted({e.topic_role for e in evs})
['clickstream', 'transactions']
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal, Protocol

from streamseg.timeunits import DAY_MS, HOUR_MS, WEEK_MS

CURRENCY = "EUR"

#: Category -> price factor (multiplies a customer's price level).
CATEGORY_PRICE: dict[str, float] = {
    "apparel": 1.0, "shoes": 1.3, "electronics": 1.6, "home": 1.2, "beauty": 0.7,
    "sports": 1.1, "toys": 0.8, "books": 0.6, "grocery": 0.6, "garden": 1.0,
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_PRICE)
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet", "app")
CHANNELS: tuple[str, ...] = ("direct", "organic", "paid_search", "social", "email", "affiliate")

TopicRole = Literal["clickstream", "transactions"]


@dataclass(frozen=True, slots=True)
class Persona:
    """Behavioural parameters of one planted segment.

    Rates and counts are means; every customer draws its own values around them
    (rates lognormally, probabilities from a Beta around the mean, counts per
    session from a Poisson), so personas overlap a little.
    """

    name: str
    description: str
    #: first activity, as a fraction of the simulated period (uniform in the range)
    active_from: tuple[float, float]
    #: last possible activity, as a fraction of the period (uniform in the range)
    active_until: tuple[float, float]
    #: own web sessions per week while active (a Poisson process)
    sessions_per_week: float
    #: page views per session (1 landing page + Poisson)
    page_views: float
    #: product views per session (Poisson)
    product_views: float
    #: P(a session contains searches)
    search_prob: float
    #: P(add to cart | product view)
    cart_add_prob: float
    #: P(an item added is removed again before the session ends)
    cart_remove_prob: float
    #: P(wishlist add | product view not added to the cart)
    wishlist_prob: float
    #: P(order | session ends with a non-empty cart); others may abandon checkout
    buy_prob: float
    #: median product price before the category factor (currency units)
    price_level: float
    #: P(an order uses a discount)
    discount_prob: float
    #: mean discount / gross amount when discounted
    discount_depth: float
    #: P(an order is refunded later, 1-14 days after)
    refund_prob: float
    #: e-mail opens per week while active (a Poisson process)
    email_opens_per_week: float
    #: P(click | open); a click starts a web session under the e-mail's session id
    email_click_prob: float
    #: P(a product interaction is in the customer's favourite category)
    category_focus: float
    #: P(a session starts with a login)
    login_prob: float
    #: P(a review at the start of a session, once the customer has ordered)
    review_prob: float
    #: favourite categories to pick from (empty: any)
    categories: tuple[str, ...] = ()
    #: favourite devices to pick from
    devices: tuple[str, ...] = DEVICES
    #: favourite acquisition channels to pick from
    channels: tuple[str, ...] = ("direct", "organic", "paid_search", "social")


PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona(
            "loyal_high_spender",
            "Long tenure, frequent high-value orders, few discounts, logs in, focused.",
            active_from=(0.0, 0.1), active_until=(1.0, 1.0),
            sessions_per_week=1.7, page_views=2.0, product_views=3.0, search_prob=0.3,
            cart_add_prob=0.4, cart_remove_prob=0.05, wishlist_prob=0.05, buy_prob=0.75,
            price_level=80.0, discount_prob=0.08, discount_depth=0.1, refund_prob=0.03,
            email_opens_per_week=0.8, email_click_prob=0.15, category_focus=0.75,
            login_prob=0.9, review_prob=0.1,
            devices=("app", "desktop"), channels=("direct", "organic"),
        ),
        Persona(
            "bargain_hunter",
            "Cheap baskets bought mostly with deep discounts; searches, spreads over categories.",
            active_from=(0.0, 0.5), active_until=(1.0, 1.0),
            sessions_per_week=1.3, page_views=2.0, product_views=3.0, search_prob=0.7,
            cart_add_prob=0.3, cart_remove_prob=0.15, wishlist_prob=0.1, buy_prob=0.55,
            price_level=28.0, discount_prob=0.85, discount_depth=0.35, refund_prob=0.04,
            email_opens_per_week=1.0, email_click_prob=0.35, category_focus=0.3,
            login_prob=0.4, review_prob=0.02,
            devices=("mobile", "desktop"), channels=("paid_search", "affiliate", "social"),
        ),
        Persona(
            "window_shopper",
            "Many long sessions, product views and cart adds, almost never buys.",
            active_from=(0.0, 0.6), active_until=(1.0, 1.0),
            sessions_per_week=2.0, page_views=2.5, product_views=4.0, search_prob=0.5,
            cart_add_prob=0.18, cart_remove_prob=0.45, wishlist_prob=0.12, buy_prob=0.02,
            price_level=60.0, discount_prob=0.2, discount_depth=0.15, refund_prob=0.05,
            email_opens_per_week=0.4, email_click_prob=0.1, category_focus=0.45,
            login_prob=0.15, review_prob=0.0,
            devices=("mobile", "tablet"), channels=("social", "organic"),
        ),
        Persona(
            "new_explorer",
            "Appears only in the last ~10% of the period; browses a lot, maybe one order.",
            active_from=(0.9, 0.97), active_until=(1.0, 1.0),
            sessions_per_week=5.0, page_views=3.0, product_views=4.0, search_prob=0.7,
            cart_add_prob=0.1, cart_remove_prob=0.2, wishlist_prob=0.08, buy_prob=0.15,
            price_level=50.0, discount_prob=0.4, discount_depth=0.15, refund_prob=0.02,
            email_opens_per_week=1.0, email_click_prob=0.3, category_focus=0.3,
            login_prob=0.2, review_prob=0.0,
            channels=("paid_search", "social", "organic"),
        ),
        Persona(
            "lapsing",
            "Buys like a regular early on, then goes silent after ~40% of the period.",
            active_from=(0.0, 0.1), active_until=(0.3, 0.42),
            sessions_per_week=2.0, page_views=2.0, product_views=3.0, search_prob=0.4,
            cart_add_prob=0.3, cart_remove_prob=0.1, wishlist_prob=0.05, buy_prob=0.55,
            price_level=55.0, discount_prob=0.25, discount_depth=0.15, refund_prob=0.05,
            email_opens_per_week=0.7, email_click_prob=0.2, category_focus=0.5,
            login_prob=0.6, review_prob=0.05,
        ),
        Persona(
            "serial_returner",
            "Buys apparel/shoes regularly and refunds about half of the orders.",
            active_from=(0.0, 0.4), active_until=(1.0, 1.0),
            sessions_per_week=1.3, page_views=2.0, product_views=3.0, search_prob=0.3,
            cart_add_prob=0.4, cart_remove_prob=0.1, wishlist_prob=0.05, buy_prob=0.6,
            price_level=50.0, discount_prob=0.2, discount_depth=0.15, refund_prob=0.55,
            email_opens_per_week=0.6, email_click_prob=0.15, category_focus=0.85,
            login_prob=0.6, review_prob=0.08, categories=("apparel", "shoes"),
        ),
        Persona(
            "email_responder",
            "Opens and clicks most e-mails; visits mostly through them, buys moderately.",
            active_from=(0.0, 0.4), active_until=(1.0, 1.0),
            sessions_per_week=0.4, page_views=1.5, product_views=2.5, search_prob=0.2,
            cart_add_prob=0.25, cart_remove_prob=0.1, wishlist_prob=0.05, buy_prob=0.4,
            price_level=45.0, discount_prob=0.45, discount_depth=0.2, refund_prob=0.04,
            email_opens_per_week=2.5, email_click_prob=0.6, category_focus=0.5,
            login_prob=0.3, review_prob=0.03, channels=("email",),
        ),
    )
}

#: The default mix: six personas (one per default segment). ``email_responder``
#: is available through ``weights``.
DEFAULT_WEIGHTS: dict[str, float] = {
    "loyal_high_spender": 0.15,
    "bargain_hunter": 0.2,
    "window_shopper": 0.2,
    "new_explorer": 0.12,
    "lapsing": 0.18,
    "serial_returner": 0.15,
}


@dataclass(frozen=True, slots=True)
class CustomerPlan:
    """A scenario's overrides for one customer (times as fractions of the period)."""

    #: first activity range, instead of the persona's
    active_from: tuple[float, float] | None = None
    #: last activity range, instead of the persona's
    active_until: tuple[float, float] | None = None
    #: from this time on the customer behaves like persona ``switch_to``
    switch_at: float | None = None
    switch_to: str | None = None
    #: the customer lapses this many days after its first activity (if earlier than
    #: ``active_until``); see :mod:`streamseg.generate.lifecycle`
    lifetime_days: float | None = None
    #: web sessions follow a renewal process with Weibull gaps of this shape (same
    #: mean as the Poisson process they replace) instead of a Poisson process
    gap_shape: float | None = None
    #: the customer's web-session and e-mail rates are its habits' times this (its own
    #: pace; see :mod:`streamseg.generate.lifecycle`)
    rate_multiplier: float | None = None


class PlanSource(Protocol):
    """Anything that plans customers, e.g. a :class:`~streamseg.generate.scenarios.Scenario`."""

    def plan(self, customer_id: str, persona: str) -> CustomerPlan: ...


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One synthetic event: the topic role it goes to and its JSON-able payload."""

    topic_role: TopicRole
    customer_id: str
    ts_ms: int
    payload: dict[str, Any]


def customer_id(i: int) -> str:
    """The id of the i-th synthetic customer.

    >>> customer_id(123)
    'c000123'
    """
    return f"c{i:06d}"


def assign_personas(
    n_customers: int, seed: int, weights: Mapping[str, float] | None = None
) -> dict[str, str]:
    """Ground truth: customer id -> persona name, mixed by ``weights``.

    Counts follow the weights exactly (largest remainder), then are shuffled by
    ``seed``. Personas missing from ``weights`` get none.

    >>> truth = assign_personas(10, seed=7, weights={"lapsing": 1, "bargain_hunter": 1})
    >>> sorted(truth.values()).count("lapsing")
    5
    """
    if n_customers < 0:
        raise ValueError("n_customers must be >= 0")
    w = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(w) - set(PERSONAS))
    if unknown:
        raise ValueError(f"unknown personas {unknown}; known: {sorted(PERSONAS)}")
    if any(not math.isfinite(v) or v < 0 for v in w.values()) or sum(w.values()) <= 0:
        raise ValueError("persona weights must be finite, >= 0 and not all zero")
    total = sum(w.values())
    exact = {name: n_customers * v / total for name, v in w.items()}
    counts = {name: int(x) for name, x in exact.items()}
    short = n_customers - sum(counts.values())
    for name in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[:short]:
        counts[name] += 1
    names = [name for name in w for _ in range(counts[name])]
    random.Random(f"personas:{seed}").shuffle(names)
    return {customer_id(i): name for i, name in enumerate(names)}


def simulate(
    truth: Mapping[str, str], *, days: float, end_ms: int, seed: int,
    scenario: PlanSource | None = None,
) -> Iterator[GeneratedEvent]:
    """Every customer's events over ``days`` days ending at ``end_ms``, in event-time order.

    Deterministic for equal ``truth``, ``days``, ``end_ms``, ``seed`` and
    ``scenario`` (which may change when customers are active and how they behave);
    lazy (one visit per customer buffered at a time).
    """
    if days <= 0:
        raise ValueError("days must be > 0")
    start_ms = end_ms - int(days * DAY_MS)
    streams = [
        _Customer(cid, PERSONAS[truth[cid]], start_ms, end_ms, seed,
                  scenario.plan(cid, truth[cid]) if scenario else None).events()
        for cid in sorted(truth)
    ]
    return heapq.merge(*streams, key=attrgetter("ts_ms"))


# --- one customer --------------------------------------------------------------


def _rate(rng: random.Random, mean: float, sigma: float = 0.35) -> float:
    """A per-customer rate/level: lognormal around ``mean`` (median = mean)."""
    return mean * rng.lognormvariate(0.0, sigma) if mean > 0 else 0.0


def _prob(rng: random.Random, mean: float, concentration: float = 25.0) -> float:
    """A per-customer probability: Beta around ``mean``."""
    if mean <= 0.0 or mean >= 1.0:
        return min(1.0, max(0.0, mean))
    return rng.betavariate(mean * concentration, (1.0 - mean) * concentration)


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth; fine for the small means used here)."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


_CLICK_RATE = 1.0 / 35_000.0  # per ms: clicks ~35 s apart


def _gap(rng: random.Random, mean_s: float = 35.0) -> int:
    """Milliseconds between two clicks of one session (1 s .. 10 min)."""
    return 1000 + min(600_000, int(rng.expovariate(1.0 / (mean_s * 1000.0))))


class _Customer:
    """One customer's personal parameters and lazy event stream."""

    gap_shape: float | None  # Weibull shape of the gaps between web sessions (None: Poisson)
    # habits drawn by _behaviour() (and redrawn by a scenario's change of behaviour)
    session_rate: float
    email_rate: float
    page_views: float
    product_views: float
    search_prob: float
    cart_add_prob: float
    cart_remove_prob: float
    wishlist_prob: float
    buy_prob: float
    price_level: float
    discount_prob: float
    discount_depth: float
    refund_prob: float
    email_click_prob: float
    focus: float
    login_prob: float
    review_prob: float

    def __init__(self, cid: str, persona: Persona, start_ms: int, end_ms: int, seed: int,
                 plan: CustomerPlan | None = None) -> None:
        rng = self.rng = random.Random(f"{seed}:{cid}")
        plan = plan or CustomerPlan()
        p = self.persona = persona
        span = end_ms - start_ms
        self.cid = cid
        self.end_ms = end_ms
        self.first_ms = start_ms + int(span * rng.uniform(*(plan.active_from or p.active_from)))
        self.until_ms = max(self.first_ms, start_ms + int(
            span * rng.uniform(*(plan.active_until or p.active_until))))
        if plan.lifetime_days is not None:
            self.until_ms = min(self.until_ms, self.first_ms + int(plan.lifetime_days * DAY_MS))
        self.gap_shape = plan.gap_shape
        self.pace = plan.rate_multiplier or 1.0
        self.__dict__.update(self._behaviour(p))
        self.category = rng.choice(p.categories or CATEGORIES)
        self.device = rng.choice(p.devices)
        self.channel = rng.choice(p.channels)
        self.n = 0  # events issued (event ids)
        self.n_sessions = 0
        self.n_emails = 0
        self.n_orders = 0
        self.pending: list[tuple[int, int, GeneratedEvent]] = []  # refunds, by time
        # a scenario's change of behaviour: drawn last, so other customers' streams do not move
        self.switch_ms = end_ms + 1
        self.after: dict[str, float] = {}
        if plan.switch_at is not None and plan.switch_to is not None:
            self.switch_ms = start_ms + int(span * plan.switch_at)
            self.after = self._behaviour(PERSONAS[plan.switch_to])

    def _behaviour(self, p: Persona) -> dict[str, float]:
        """Rates and probabilities drawn around the persona's (the customer's own habits)."""
        rng = self.rng
        activity = rng.lognormvariate(0.0, 0.3)
        return {
            "session_rate": _rate(rng, p.sessions_per_week) * activity * self.pace / WEEK_MS,
            "email_rate": _rate(rng, p.email_opens_per_week, 0.4) * self.pace / WEEK_MS,
            "page_views": _rate(rng, p.page_views, 0.25),
            "product_views": _rate(rng, p.product_views, 0.25),
            "search_prob": _prob(rng, p.search_prob),
            "cart_add_prob": _prob(rng, p.cart_add_prob),
            "cart_remove_prob": _prob(rng, p.cart_remove_prob),
            "wishlist_prob": _prob(rng, p.wishlist_prob),
            "buy_prob": _prob(rng, p.buy_prob),
            "price_level": _rate(rng, p.price_level, 0.25),
            "discount_prob": _prob(rng, p.discount_prob),
            "discount_depth": p.discount_depth * rng.uniform(0.7, 1.3),
            "refund_prob": _prob(rng, p.refund_prob, 15.0),
            "email_click_prob": _prob(rng, p.email_click_prob),
            "focus": _prob(rng, p.category_focus),
            "login_prob": _prob(rng, p.login_prob),
            "review_prob": _prob(rng, p.review_prob),
        }

    # -- plan -----------------------------------------------------------------

    def _times(self, rate: float, start: int, stop: int, shape: float | None = None
               ) -> list[int]:
        """A Poisson process over [start, stop), nudged away from the night.

        With a ``shape``, a renewal process instead: Weibull gaps of that shape and
        mean ``1 / rate`` (shape > 1: more regular than Poisson; < 1: burstier).
        """
        rng = self.rng
        out: list[int] = []
        if rate <= 0:
            return out
        scale = 1.0 / rate / math.gamma(1.0 + 1.0 / shape) if shape else 0.0
        t = float(start)
        while True:
            t += rng.weibullvariate(scale, shape) if shape else rng.expovariate(rate)
            if t >= stop:
                return out
            ts = int(t)
            if (ts // HOUR_MS) % 24 < 6 and rng.random() < 0.7:
                ts += 8 * HOUR_MS  # most night visits move to the morning
                if ts >= stop:
                    continue
            out.append(ts)

    def _plan(self) -> list[tuple[int, bool]]:
        """Start times of the visits, ``True`` for an e-mail open."""
        first, until = self.first_ms, self.until_ms
        switch = max(first, min(until, self.switch_ms))
        plan = [(first, False)]
        shape = self.gap_shape
        plan += [(t, False) for t in self._times(self.session_rate, first, switch, shape)]
        plan += [(t, True) for t in self._times(self.email_rate, first, switch)]
        if self.after and switch < until:
            plan += [(t, False)
                     for t in self._times(self.after["session_rate"], switch, until, shape)]
            plan += [(t, True) for t in self._times(self.after["email_rate"], switch, until)]
        plan.sort()
        return plan

    def events(self) -> Iterator[GeneratedEvent]:
        """This customer's events in time order (refunds slotted in as they fall due)."""
        pending, end_ms = self.pending, self.end_ms
        cursor = 0
        for start, is_email in self._plan():
            if self.after and start >= self.switch_ms:
                self.__dict__.update(self.after)  # the scenario's change of behaviour
                self.after = {}
            visit = self._email(max(start, cursor)) if is_email else self._web(max(start, cursor))
            for ev in visit:
                while pending and pending[0][0] <= ev.ts_ms:
                    yield heapq.heappop(pending)[2]
                if ev.ts_ms > end_ms:
                    break
                yield ev
            cursor = visit[-1].ts_ms + 60_000 + _gap(self.rng, 600.0)
        while pending:
            yield heapq.heappop(pending)[2]

    # -- visits ---------------------------------------------------------------

    def _email(self, t: int) -> list[GeneratedEvent]:
        self.n_emails += 1
        sid = f"{self.cid}-m{self.n_emails}"
        out = [self._click(t, "email_open", sid, "email")]
        if self.rng.random() < self.email_click_prob:
            t += _gap(self.rng, 20.0)
            out.append(self._click(t, "email_click", sid, "email"))
            self._session(t, sid, "email", out)
        return out

    def _web(self, t: int) -> list[GeneratedEvent]:
        self.n_sessions += 1
        sid = f"{self.cid}-s{self.n_sessions}"
        rng = self.rng
        channel = self.channel if rng.random() < 0.75 else rng.choice(CHANNELS[:4])
        out: list[GeneratedEvent] = []
        self._session(t - 1000, sid, channel, out)
        return out

    def _session(self, t: int, sid: str, channel: str, out: list[GeneratedEvent]) -> None:
        """Append one web session's clicks (and maybe an order) to ``out``."""
        rng = self.rng
        device = self.device if rng.random() < 0.85 else rng.choice(DEVICES)

        cid, expo, append = self.cid, rng.expovariate, out.append

        def click(
            typ: str, category: str | None = None, product_id: str | None = None,
            price: float | None = None,
        ) -> None:
            # the hot path: _gap() and _click() inlined
            nonlocal t
            t += 1000 + min(600_000, int(expo(_CLICK_RATE)))
            self.n += 1
            payload: dict[str, Any] = {
                "event_id": f"{cid}-{self.n}", "customer_id": cid, "ts": t, "type": typ,
                "session_id": sid, "device": device, "channel": channel,
            }
            if category is not None:
                payload["category"] = category
            if product_id is not None:
                payload["product_id"] = product_id
                payload["price"] = price
            append(GeneratedEvent("clickstream", cid, t, payload))

        if rng.random() < self.login_prob:
            click("login")
        if self.n_orders and rng.random() < self.review_prob:
            click("review", category=self.category)
        click("page_view")
        steps = ["page"] * _poisson(rng, max(0.0, self.page_views - 1.0))
        steps += ["view"] * _poisson(rng, self.product_views)
        if rng.random() < self.search_prob:
            steps += ["search"] * (1 + _poisson(rng, 0.5))
        rng.shuffle(steps)
        cart: list[tuple[str, str, float]] = []
        for step in steps:
            if step == "page":
                click("page_view", category=self._pick_category() if rng.random() < 0.5 else None)
            elif step == "search":
                click("search")
            else:
                cat = self._pick_category()
                product = f"{cat[:3]}-{rng.randrange(400):03d}"
                price = round(
                    self.price_level * CATEGORY_PRICE[cat] * rng.lognormvariate(0.0, 0.35), 2
                )
                click("product_view", category=cat, product_id=product, price=price)
                if rng.random() < self.cart_add_prob:
                    click("add_to_cart", category=cat, product_id=product, price=price)
                    cart.append((cat, product, price))
                elif rng.random() < self.wishlist_prob:
                    click("wishlist_add", category=cat, product_id=product, price=price)
        kept = []
        for cat, product, price in cart:
            if rng.random() < self.cart_remove_prob:
                click("remove_from_cart", category=cat, product_id=product, price=price)
            else:
                kept.append((cat, product, price))
        if kept:
            if rng.random() < self.buy_prob:
                click("checkout_start")
                t += _gap(rng, 60.0)
                out.append(self._order(t, kept))
            elif rng.random() < 0.25:
                click("checkout_start")
        if rng.random() < self.login_prob * 0.4:
            click("logout")

    def _pick_category(self) -> str:
        rng = self.rng
        return self.category if rng.random() < self.focus else rng.choice(CATEGORIES)

    # -- events ---------------------------------------------------------------

    def _next_id(self) -> str:
        self.n += 1
        return f"{self.cid}-{self.n}"

    def _click(
        self,
        t: int,
        typ: str,
        sid: str,
        channel: str,
        device: str | None = None,
        category: str | None = None,
        product_id: str | None = None,
        price: float | None = None,
    ) -> GeneratedEvent:
        payload: dict[str, Any] = {
            "event_id": self._next_id(), "customer_id": self.cid, "ts": t, "type": typ,
            "session_id": sid, "device": device or self.device, "channel": channel,
        }
        if category is not None:
            payload["category"] = category
        if product_id is not None:
            payload["product_id"] = product_id
            payload["price"] = price
        return GeneratedEvent("clickstream", self.cid, t, payload)

    def _order(self, t: int, cart: list[tuple[str, str, float]]) -> GeneratedEvent:
        rng = self.rng
        self.n_orders += 1
        quantities = [1 if rng.random() < 0.85 else 2 for _ in cart]
        gross = sum(price * q for (_, _, price), q in zip(cart, quantities, strict=True))
        discount = 0.0
        if rng.random() < self.discount_prob:
            depth = min(0.8, max(0.05, rng.gauss(self.discount_depth, 0.07)))
            discount = round(gross * depth, 2)
        amount = max(0.01, round(gross - discount, 2))
        categories = sorted({cat for cat, _, _ in cart})
        payload: dict[str, Any] = {
            "event_id": self._next_id(), "customer_id": self.cid, "ts": t, "amount": amount,
            "currency": CURRENCY, "items": sum(quantities), "categories": categories,
            "discount_amount": discount, "refund": False,
        }
        if rng.random() < self.refund_prob:
            self._schedule_refund(t, amount, sum(quantities), categories)
        return GeneratedEvent("transactions", self.cid, t, payload)

    def _schedule_refund(self, t: int, amount: float, items: int, categories: list[str]) -> None:
        """A refund 1-14 days later, but never after the customer's last activity."""
        rng = self.rng
        latest = min(self.end_ms, max(self.until_ms, t + 60_000))
        due = min(latest, t + int(rng.uniform(1.0, 14.0) * DAY_MS))
        if due <= t:
            return
        if rng.random() < 0.3 and items > 1:
            amount, items = round(amount / items, 2), 1  # one item back
        payload: dict[str, Any] = {
            "event_id": self._next_id(), "customer_id": self.cid, "ts": due, "amount": amount,
            "currency": CURRENCY, "items": items, "categories": list(categories),
            "discount_amount": 0.0, "refund": True,
        }
        ev = GeneratedEvent("transactions", self.cid, due, payload)
        heapq.heappush(self.pending, (due, self.n, ev))
