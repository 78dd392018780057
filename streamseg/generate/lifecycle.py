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
* **pace**: each customer visits (web sessions and e-mail opens) at its own pace,
  its habits' rates times a multiplier drawn once per customer from a
  *lognormal* distribution with mean 1 (so every persona keeps its mean rate)
  and coefficient of variation sqrt(2) (:data:`PACE_CV`, sigma = sqrt(ln 3) =
  1.05 on the log scale): a tenth of the customers visit under 0.15x their
  persona's mean, a tenth over 2.2x. Real customer bases are like this
  (Ehrenberg's NBD: purchase rates vary several-fold within any group of
  buyers); the fits on CDNOW put the Gamma shape of the rates at r = 0.243
  (BG/NBD, Fader, Hardie and Lee 2005) and r = 0.553 (Pareto/NBD, same data),
  i.e. a coefficient of variation 1/sqrt(r) of 1.3-2.0; sqrt(2) is r = 0.5. With
  the spread the personas' habits already have (lognormal, sigma about 0.46) the
  rates within a persona vary with a coefficient of variation of about 1.6. It
  is a lognormal, not the Gamma that BG/NBD assumes: its tails differ;
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
import math
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


#: Coefficient of variation of a customer's pace (see the module docstring).
PACE_CV = math.sqrt(2.0)
#: The pace's lognormal sigma: a lognormal's CV is sqrt(exp(sigma^2) - 1).
PACE_SIGMA = math.sqrt(math.log(1.0 + PACE_CV**2))


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Plans every customer's lapse and visit rhythm from its persona's :data:`LIFECYCLES`.

    Customers stay active to the end of the period unless their lifetime ends
    first (the personas' own ``active_until`` is replaced), or an ``inner`` plan
    (a drift scenario) says otherwise; each visits at its own pace (a rate
    multiplier, mean 1). Deterministic per ``seed`` and customer.
    """

    seed: int
    inner: PlanSource | None = None

    def plan(self, customer_id: str, persona: str) -> CustomerPlan:
        """One customer's plan: the inner plan's, with a drawn lifetime, pace and the gap shape."""
        base = (self.inner.plan(customer_id, persona) if self.inner
                else CustomerPlan(active_until=(1.0, 1.0)))
        life = LIFECYCLES[persona]
        rng = random.Random(f"lifecycle:{self.seed}:{customer_id}")
        lifetime = rng.weibullvariate(life.lifetime_days, life.lifetime_shape)
        pace = rng.lognormvariate(-PACE_SIGMA**2 / 2.0, PACE_SIGMA)  # mean 1
        return dataclasses.replace(base, lifetime_days=lifetime, gap_shape=life.gap_shape,
                                   rate_multiplier=pace)
