"""One reporting currency: money in other currencies is converted before it is summed.

The feature store adds amounts up (spend, order value); amounts in different
currencies must never meet there raw. A :class:`Currencies` table says how
many units of the reporting currency one unit of each other currency is worth
(``STREAMSEG_CURRENCY_RATES``); the decoder converts every transaction to the
reporting currency (``STREAMSEG_REPORTING_CURRENCY``) and dead-letters one in a
currency the table lacks as ``unknown_currency``. Codes compare
case-insensitively.

>>> eur = Currencies.parse("EUR", "USD:0.9, GBP:1.15")
>>> eur.rate("usd"), eur.rate("EUR"), eur.rate("JPY")
(0.9, 1.0, None)
>>> eur.describe()
'EUR (and GBP, USD by the rate table)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Currencies:
    """The reporting currency and the rates of the others into it."""

    reporting: str
    rates: dict[str, float] = field(default_factory=dict)  # code -> reporting units per unit

    @classmethod
    def parse(cls, reporting: str, spec: str) -> Currencies:
        """``"USD:0.92,GBP:1.17"`` -> a table; raises ValueError naming a bad entry."""
        code = reporting.strip().upper()
        if not _is_code(code):
            raise ValueError(f"the reporting currency must be a 3-letter code, got {reporting!r}")
        rates: dict[str, float] = {}
        for entry in (e.strip() for e in spec.split(",")):
            if not entry:
                continue
            name, sep, value = entry.partition(":")
            name = name.strip().upper()
            try:
                rate = float(value)
            except ValueError:
                rate = math.nan
            if not sep or not _is_code(name) or not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"currency rates look like USD:0.92,GBP:1.17 (a 3-letter code, "
                                 f"a positive number); got {entry!r}")
            rates[name] = rate
        rates.pop(code, None)  # the reporting currency converts at 1, whatever the table says
        return cls(code, rates)

    def rate(self, currency: str) -> float | None:
        """Reporting units per unit of ``currency``; None when the table lacks it."""
        code = currency.upper()
        return 1.0 if code == self.reporting else self.rates.get(code)

    def describe(self) -> str:
        """The currencies accepted, for a dead letter's detail."""
        if not self.rates:
            return f"{self.reporting} only"
        return f"{self.reporting} (and {', '.join(sorted(self.rates))} by the rate table)"


def _is_code(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha()
