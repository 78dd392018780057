"""A planted lapse process and visit rhythm per persona, for measuring customer-value models.

Buy-till-you-die models (BG/NBD with Gamma-Gamma) assume that a customer buys
as a Poisson process, may drop out after each purchase with a fixed
probability, and spends amounts drawn from a Gamma distribution. To test such a
model under *misspecification* the generator plants something else:

* **lapse**: each customer stays for a lifetime drawn from a Weibull
  distribution with the persona's scale and a shape above 1, counted from its
  first activity, so the hazard of leaving *rises with age* and does not depend
  on how often the customer bought;
* **visits**: web sessions follow a renewal process whose gaps are Weibull with
  the persona's shape (above 1: more regular than Poisson, a weekly shopper;
  below 1: burstier, a sale hunter), with the persona's mean rate; purchases are
  the sessions that end in an order (cart and buy probabilities), and e-mail
  visits stay a Poisson process;
* **spend**: unchanged from the personas: an order is the sum of its items, each
  priced lognormally around the customer's price level (itself lognormal around
  the persona's ``price_level``, times a category factor), 1-2 of each, minus a
  discount; the number of items varies with the cart probabilities, so order
  values are neither Gamma nor independent of the persona's frequency.

:class:`Lifecycle` is a plan source for :func:`~streamseg.generate.personas.simulate`
(alone or around a drift scenario). Without it the generator is unchanged.

>>> from streamseg.generate import assign_personas, simulate
>>> truth = assign_personas(50, seed=3)
>>> plan = Lifecycle(seed=3).plan("c000001", "lapsing")
>>> plan.active_until, plan.gap_shape
((1.0, 1.0), 1.6)
>>> 0 < plan.lifetime_days < 1000
True
>>> evs = list(simulate(truth, days=60, end_ms=1_767_225_600_000, seed=3, scenario=Lifecycle(3)))
>>> len({e.customer_id for e in evs}) > 40
True
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from streamseg.generate.personas import CustomerPlan, PlanSource


@dataclass(frozen=True, slots=True)
class PersonaLifecycle:
    """How long a persona's customers stay and how regular their visits are."""

    #: Weibull scale of a customer's lifetime, in days from its first activity
    lifetime_days: float
    #: Weibull shape of the lifetime (> 1: the hazard of lapsing rises with age)
    lifetime_shape: float
    #: Weibull shape of the gaps between web sessions (1 would be Poisson)
    gap_shape: float


#: What is planted per persona (see the module docstring).
LIFECYCLES: dict[str, PersonaLifecycle] = {
    "loyal_high_spender": PersonaLifecycle(lifetime_days=720.0, lifetime_shape=1.5, gap_shape=2.0),
    "bargain_hunter": PersonaLifecycle(lifetime_days=300.0, lifetime_shape=1.3, gap_shape=0.6),
    "window_shopper": PersonaLifecycle(lifetime_days=260.0, lifetime_shape=1.2, gap_shape=0.8),
    "new_explorer": PersonaLifecycle(lifetime_days=60.0, lifetime_shape=1.2, gap_shape=0.7),
    "lapsing": PersonaLifecycle(lifetime_days=140.0, lifetime_shape=2.5, gap_shape=1.6),
    "serial_returner": PersonaLifecycle(lifetime_days=420.0, lifetime_shape=1.4, gap_shape=1.3),
    "email_responder": PersonaLifecycle(lifetime_days=480.0, lifetime_shape=1.3, gap_shape=0.9),
}


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Plans every customer's lapse and visit rhythm from its persona's :data:`LIFECYCLES`.

    Customers stay active to the end of the period unless their lifetime ends
    first (the personas' own ``active_until`` is replaced), or an ``inner`` plan
    (a drift scenario) says otherwise. Deterministic per ``seed`` and customer.
    """

    seed: int
    inner: PlanSource | None = None

    def plan(self, customer_id: str, persona: str) -> CustomerPlan:
        """One customer's plan: the inner plan's, with a drawn lifetime and the gap shape."""
        base = (self.inner.plan(customer_id, persona) if self.inner
                else CustomerPlan(active_until=(1.0, 1.0)))
        life = LIFECYCLES[persona]
        rng = random.Random(f"lifecycle:{self.seed}:{customer_id}")
        lifetime = rng.weibullvariate(life.lifetime_days, life.lifetime_shape)
        return dataclasses.replace(base, lifetime_days=lifetime, gap_shape=life.gap_shape)
