"""Drift scenarios: a steady population in which, at a set time, something changes.

The default generator is not stationary on purpose (new explorers arrive late,
lapsing customers go silent), so a scenario starts from a *steady* population
instead: customers of five personas who join at a constant rate over the whole
period and stay for ``STAY`` (30-50%) of it, so inflow and outflow balance and,
from half-way on, the active population is in a steady state (same mix of
personas, same age mix: with a closed population tenure alone would drift).
Then, at ``at`` (a fraction of the period, default 0.75):

* ``stationary`` -- nothing happens (the control run: no drift alert expected);
* ``persona_shift`` -- every customer of ``persona`` (default window shoppers,
  ``weight`` = 40% of the customers) starts behaving like ``to`` (default loyal
  high spenders);
* ``new_persona`` -- customers of ``persona`` (default new explorers, not in the
  steady mix), ``share`` of all customers (default 0.2), join over the next
  quarter of the remaining period;
* ``shrink`` -- ``share`` (default 0.9) of ``persona``'s customers (default
  window shoppers, ``weight`` = 40% of the customers) go silent.

The changing persona is given a large ``weight`` because segments found online
mix personas: a change confined to a fifth of the customers barely moves the
segment mix (measured: composition shift ~0.11 against the 0.15 default alert).

The ground truth stays each customer's planted persona.

>>> sc = Scenario("shrink", at=0.5)
>>> truth = sc.assign(100, seed=1)
>>> sorted(set(truth.values())) == sorted(STEADY_WEIGHTS)
True
>>> sum(p == "window_shopper" for p in truth.values())
40
>>> sc.change_ms(days=10, end_ms=10 * 86_400_000)
432000000
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, get_args

from streamseg.generate.personas import PERSONAS, CustomerPlan, assign_personas
from streamseg.timeunits import DAY_MS

ScenarioKind = Literal["stationary", "persona_shift", "new_persona", "shrink"]
SCENARIOS: tuple[str, ...] = get_args(ScenarioKind)

#: The steady mix: personas whose customers stay active to the end of the period.
STEADY_WEIGHTS: dict[str, float] = {
    "loyal_high_spender": 1.0, "bargain_hunter": 1.0, "window_shopper": 1.0,
    "serial_returner": 1.0, "email_responder": 1.0,
}
DEFAULT_PERSONA: dict[str, str] = {
    "persona_shift": "window_shopper", "new_persona": "new_explorer", "shrink": "window_shopper",
}
DEFAULT_SHARE: dict[str, float] = {"new_persona": 0.2, "shrink": 0.9}
#: How long a steady customer stays, as a fraction of the period (uniform).
STAY = (0.3, 0.5)


@dataclass(frozen=True, slots=True)
class Scenario:
    """What changes, when (``at``, a fraction of the simulated period) and for whom."""

    kind: ScenarioKind = "stationary"
    at: float = 0.75
    persona: str | None = None
    to: str = "loyal_high_spender"
    share: float | None = None
    weight: float = 0.4

    def __post_init__(self) -> None:
        if self.kind not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.kind!r}; known: {', '.join(SCENARIOS)}")
        if not 0.0 < self.at < 1.0:
            raise ValueError("'at' is a fraction of the period: 0 < at < 1")
        target, share = self.target, self.fraction
        if target is not None and target not in PERSONAS:
            raise ValueError(f"unknown persona {target!r}; known: {sorted(PERSONAS)}")
        if self.kind in ("persona_shift", "shrink") and target not in STEADY_WEIGHTS:
            raise ValueError(f"{self.kind}: persona must be one of the steady mix "
                             f"{sorted(STEADY_WEIGHTS)}")
        if self.kind == "new_persona" and target in STEADY_WEIGHTS:
            raise ValueError(f"new_persona: {target} is already in the steady mix")
        if self.kind == "persona_shift" and (self.to not in PERSONAS or self.to == target):
            raise ValueError(f"persona_shift: 'to' must be another persona of {sorted(PERSONAS)}")
        if share is not None and not 0.0 < share < 1.0:
            raise ValueError("share must be between 0 and 1")
        if not 0.0 < self.weight < 1.0:
            raise ValueError("weight must be between 0 and 1")

    @property
    def target(self) -> str | None:
        """The persona that changes (None for ``stationary``)."""
        return self.persona or DEFAULT_PERSONA.get(self.kind)

    @property
    def fraction(self) -> float | None:
        return self.share if self.share is not None else DEFAULT_SHARE.get(self.kind)

    def weights(self) -> dict[str, float]:
        """The persona mix: the steady one, plus the newcomers for ``new_persona``."""
        total = sum(STEADY_WEIGHTS.values())
        target = self.target or ""
        if self.kind == "stationary":
            return dict(STEADY_WEIGHTS)
        if self.kind == "new_persona":
            share = self.fraction or 0.0
            return {**{k: v / total * (1 - share) for k, v in STEADY_WEIGHTS.items()}, target: share}
        rest = total - STEADY_WEIGHTS[target]
        return {k: self.weight if k == target else v / rest * (1 - self.weight)
                for k, v in STEADY_WEIGHTS.items()}

    def assign(self, n_customers: int, seed: int) -> dict[str, str]:
        """Ground truth for this scenario's population."""
        return assign_personas(n_customers, seed, self.weights())

    def change_ms(self, *, days: float, end_ms: int) -> int:
        """Event time of the change for a period of ``days`` ending at ``end_ms``."""
        start = end_ms - int(days * DAY_MS)
        return start + int((end_ms - start) * self.at)

    def plan(self, customer_id: str, persona: str) -> CustomerPlan:
        """When one customer is active and whether (and when) it changes behaviour."""
        rng = random.Random(f"scenario:{customer_id}")
        join, stay = rng.random(), rng.uniform(*STAY)
        if self.kind == "new_persona" and persona == self.target:
            join = self.at + join * 0.1
        leave = join + stay
        if self.kind == "shrink" and persona == self.target and rng.random() < (self.fraction or 0):
            leave = min(leave, self.at)
        plan = CustomerPlan(active_from=(join, join), active_until=(leave, leave))
        if self.kind == "persona_shift" and persona == self.target:
            return CustomerPlan(plan.active_from, plan.active_until, self.at, self.to)
        return plan
