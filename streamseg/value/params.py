"""The fitted parameters of the customer-value model, versioned and published as JSON.

BG/NBD (Fader, Hardie and Lee 2005) for repeat purchases: ``r`` and ``alpha`` shape the
Gamma spread of purchase rates across customers, ``a`` and ``b`` the Beta spread of the
chance to drop out after each purchase. Gamma-Gamma (Fader and Hardie 2013) for spend:
``p``, ``q`` and ``v``. Time is counted in days; spend in the reporting currency.

>>> p = ValueParams(r=0.8, alpha=40.0, a=0.9, b=3.0, p=6.0, q=4.0, v=30.0, version=3,
...                 fitted_at_ms=1.0, n_customers=500)
>>> ValueParams.from_json(p.to_json()) == p
True
>>> round(p.population_spend, 2)  # the mean spend per purchase day of a new customer
60.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

#: The parameters' time unit: frequency, recency and T are counted in days.
TIME_UNIT = "days"


@dataclass(frozen=True, slots=True)
class ValueParams:
    """BG/NBD and Gamma-Gamma point estimates, with where they came from.

    Parameters
    ----------
    r, alpha
        BG/NBD: purchase rates are Gamma(r, alpha) across customers (alpha in days).
    a, b
        BG/NBD: the chance to drop out after a purchase is Beta(a, b) across customers.
    p, q, v
        Gamma-Gamma: spend per purchase day is Gamma(p, nu), nu ~ Gamma(q, v).
    version
        Goes up by one with every fit.
    model_version
        The segment model's version when the leader fitted them (published with it).
    fitted_at_ms
        The engine clock (event time) at the fit.
    n_customers
        Customers of the sample the BG/NBD part was fitted on.
    n_repeat
        Of those, customers with repeat purchases (the Gamma-Gamma part's sample).
    active_r, active_alpha, active_a, active_b
        BG/NBD on *active days* (UTC days with any event: a visit, an order or a refund),
        fitted on every customer of the sample: its P(alive) is the churn risk's chance that
        the customer is still there. None (parameters published before, or too few
        customers): the churn risk is the purchase BG/NBD's alone.
    n_active
        Customers the active-day part was fitted on.
    """

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    version: int = 0
    model_version: int = 0
    fitted_at_ms: float = 0.0
    n_customers: int = 0
    n_repeat: int = 0
    time_unit: str = TIME_UNIT
    active_r: float | None = None
    active_alpha: float | None = None
    active_a: float | None = None
    active_b: float | None = None
    n_active: int = 0

    @property
    def active(self) -> tuple[float, float, float, float] | None:
        """The active-day BG/NBD's (r, alpha, a, b), or None when not fitted."""
        prm = (self.active_r, self.active_alpha, self.active_a, self.active_b)
        if any(v is None for v in prm):
            return None
        return prm  # type: ignore[return-value]

    @property
    def population_spend(self) -> float:
        """Gamma-Gamma's mean spend per purchase day for a customer without repeat purchases."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValueParams:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ValueParams:
        return cls.from_dict(orjson.loads(raw))
