"""Readable segment names from centres in standardized units (documented rules).

Each archetype scores a centre by a weighted sum of its z-scores; names are
handed out greedily, best score first, so every name is used once. Centres no
archetype fits (score < ``min_score``) are named after their most distinctive
feature.

One name comes from the segments' customer value, not their centres: "At-risk
high-value" goes first, to the segment whose customers are both likelier to
leave than the population (mean churn risk) and spent more to date (mean net
spend): the customers worth winning back (see :class:`ValueStanding`).

>>> centers = {0: {"monetary_30d": 2.0, "purchase_frequency_30d": 1.5},
...            1: {"discount_share": 2.5}, 2: {"monetary_30d": 0.1}}
>>> name_segments(centers)
{0: 'High-value loyalists', 1: 'Bargain hunters', 2: 'Segment 2 (monetary_30d +0.1sd)'}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ARCHETYPES: dict[str, dict[str, float]] = {
    "High-value loyalists": {"monetary_30d": 1.0, "purchase_frequency_30d": 1.0, "cart_conversion": 0.5},
    "Bargain hunters": {"discount_share": 1.0, "top_category_share": -0.3},
    "Window shoppers": {"sessions_30d": 0.5, "pages_per_session": 0.6, "cart_conversion": -0.6,
                        "purchase_frequency_30d": -0.6},
    "New explorers": {"tenure_days": -1.0, "sessions_30d": 0.2},
    "At-risk": {"days_since_last_activity": 1.0, "sessions_30d": -0.5},
    "Serial returners": {"refund_rate": 1.0},
    "Email responders": {"email_click_rate": 0.7, "email_opens_30d": 0.7},
    "Category specialists": {"top_category_share": 1.0},
}


AT_RISK_HIGH_VALUE = "At-risk high-value"


@dataclass(frozen=True, slots=True)
class ValueStanding:
    """A segment's customer value against the whole population's: the evidence for
    "At-risk high-value".

    The name needs the segment's mean churn risk at least ``RISK_OVER`` above the
    population's and its members' mean net spend to date at least ``SPEND_TIMES`` the
    population's; a segment keeps it while it stays ``RISK_KEEP`` and ``SPEND_KEEP`` above
    (lower bars, so the name does not flip at each refresh). Spend to date, not predicted
    lifetime value: the prediction already falls with the risk (fewer purchases expected),
    so "high risk and high predicted value" would contradict itself; what is at stake is
    what these customers have been bringing.

    >>> v = ValueStanding(churn_risk=0.7, population_churn_risk=0.45, spend=420.0,
    ...                   population_spend=180.0, currency="EUR")
    >>> v.fits(), v.fits(keep=True)
    (True, True)
    >>> v.reason()
    'mean churn risk 0.70 against 0.45 for all customers; spent 420.00 EUR each to date, 2.3x the average customer'
    """

    RISK_OVER = 0.10
    SPEND_TIMES = 1.5
    RISK_KEEP = 0.05
    SPEND_KEEP = 1.25

    churn_risk: float  # the segment's mean churn risk
    population_churn_risk: float
    spend: float  # its members' mean net spend to date
    population_spend: float
    currency: str = ""

    @property
    def spend_ratio(self) -> float:
        return self.spend / self.population_spend if self.population_spend > 0 else 0.0

    def fits(self, keep: bool = False) -> bool:
        """The segment is at risk and high-value (``keep``: by the lower bars of a holder)."""
        over, times = (self.RISK_KEEP, self.SPEND_KEEP) if keep else (self.RISK_OVER, self.SPEND_TIMES)
        return self.churn_risk - self.population_churn_risk >= over and self.spend_ratio >= times

    def reason(self) -> str:
        unit = f" {self.currency}" if self.currency else ""
        return (f"mean churn risk {self.churn_risk:.2f} against {self.population_churn_risk:.2f} "
                f"for all customers; spent {self.spend:,.2f}{unit} each to date, "
                f"{self.spend_ratio:.1f}x the average customer")


def value_name(value: Mapping[int, ValueStanding] | None, previous: Mapping[int, str],
               live: Mapping[int, object]) -> int | None:
    """The segment to call "At-risk high-value": its holder while it still fits by the lower
    bars, else the best fit (largest spend ratio x risk excess); ``value`` None or empty (not
    measured yet): the holder keeps it."""
    holder = next((sid for sid, n in previous.items() if n == AT_RISK_HIGH_VALUE and sid in live),
                  None)
    if not value:
        return holder
    if holder is not None and holder in value and value[holder].fits(keep=True):
        return holder
    fit = [(v.spend_ratio * (v.churn_risk - v.population_churn_risk), sid)
           for sid, v in value.items() if sid in live and v.fits()]
    return max(fit)[1] if fit else None


def name_segments(
    centers: Mapping[int, Mapping[str, float]], min_score: float = 0.75,
    previous: Mapping[int, str] | None = None, keep_score: float = 0.5,
    value: Mapping[int, ValueStanding] | None = None,
) -> dict[int, str]:
    """Unique names; a segment keeps its previous name while that name still fits.

    "Still fits" means the archetype still scores at least ``keep_score`` (a
    lower bar than ``min_score``, so names do not flicker at the threshold); a
    fallback name is kept as long as no archetype claims the segment. ``value``:
    each segment's standing for "At-risk high-value" (:func:`value_name`).
    """
    scores = sorted(
        ((score(c, rule), sid, name)
         for sid, c in centers.items() for name, rule in ARCHETYPES.items()),
        reverse=True,
    )
    names: dict[int, str] = {}
    used: set[str] = set()
    at_risk = value_name(value, previous or {}, centers)
    if at_risk is not None:
        names[at_risk] = AT_RISK_HIGH_VALUE
    for sid, name in (previous or {}).items():
        if sid in centers and sid not in names and name in ARCHETYPES \
                and score(centers[sid], ARCHETYPES[name]) >= keep_score:
            names[sid] = name
            used.add(name)
    for score_, sid, name in scores:
        if score_ < min_score:
            break
        if sid not in names and name not in used:
            names[sid] = name
            used.add(name)
    for sid, c in centers.items():
        if sid not in names:
            old = (previous or {}).get(sid)
            kept = old and old not in ARCHETYPES and old not in used and old != AT_RISK_HIGH_VALUE
            names[sid] = old if kept and old else _fallback(sid, c)
    return dict(sorted(names.items()))


def explain_name(name: str, zscores: Mapping[str, float], min_score: float = 0.75) -> str:
    """Why a segment with these z-scores (its profile's) carries ``name``, in a sentence.

    >>> explain_name("Bargain hunters", {"discount_share": 2.0, "top_category_share": 1.0})[:100]
    "'Bargain hunters' fits best: its rule scores 1.7 here (discount_share +2.0sd x 1, top_category_share"
    >>> explain_name("Segment 2 (monetary_30d +0.1sd)", {"monetary_30d": 0.1})[:60]
    'No archetype fits this segment (every rule scores below 0.75'
    """
    rule = ARCHETYPES.get(name)
    if rule is None:
        return (f"No archetype fits this segment (every rule scores below {min_score:g}), so it is "
                "named after its most distinctive feature.")
    terms = ", ".join(f"{f} {zscores.get(f, 0.0):+.1f}sd x {w:g}" for f, w in rule.items())
    return (f"'{name}' fits best: its rule scores {score(zscores, rule):.1f} here ({terms}); names "
            f"go to the best-scoring fits of at least {min_score:g}, each name once.")


def name_reasons(names: Mapping[int, str], centers: Mapping[int, Mapping[str, float]],
                 value: Mapping[int, ValueStanding] | None = None) -> dict[int, str]:
    """Why each segment has its name, in words (the catalog's ``name_reason``): the value
    standing for :data:`AT_RISK_HIGH_VALUE`, else :func:`explain_name` on the centre that
    chose the name.

    >>> name_reasons({0: "Bargain hunters"}, {0: {"discount_share": 2.0, "top_category_share": -0.5}})[0][:60]
    "'Bargain hunters' fits best: its rule scores 2.1 here (disco"
    """
    out = {}
    for sid, name in names.items():
        if name == AT_RISK_HIGH_VALUE:
            v = (value or {}).get(sid)
            out[sid] = v.reason() if v else "at risk and high-value when last measured"
        else:
            out[sid] = explain_name(name, centers.get(sid, {}))
    return out


def score(center: Mapping[str, float], rule: Mapping[str, float]) -> float:
    return sum(w * center.get(f, 0.0) for f, w in rule.items())


def _fallback(sid: int, center: Mapping[str, float]) -> str:
    if not center:
        return f"Segment {sid}"
    feat, z = max(center.items(), key=lambda kv: abs(kv[1]))
    return f"Segment {sid} ({feat} {z:+.1f}sd)"
