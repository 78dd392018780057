"""Readable segment names from centres in standardized units (documented rules).

Each archetype scores a centre by a weighted sum of its z-scores; names are
handed out greedily, best score first, so every name is used once. Centres no
archetype fits (score < ``min_score``) are named after their most distinctive
feature.

>>> centers = {0: {"monetary_30d": 2.0, "purchase_frequency_30d": 1.5},
...            1: {"discount_share": 2.5}, 2: {"monetary_30d": 0.1}}
>>> name_segments(centers)
{0: 'High-value loyalists', 1: 'Bargain hunters', 2: 'Segment 2 (monetary_30d +0.1sd)'}
"""

from __future__ import annotations

from collections.abc import Mapping

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


def name_segments(
    centers: Mapping[int, Mapping[str, float]], min_score: float = 0.75,
    previous: Mapping[int, str] | None = None, keep_score: float = 0.5,
) -> dict[int, str]:
    """Unique names; a segment keeps its previous name while that name still fits.

    "Still fits" means the archetype still scores at least ``keep_score`` (a
    lower bar than ``min_score``, so names do not flicker at the threshold); a
    fallback name is kept as long as no archetype claims the segment.
    """
    scores = sorted(
        ((score(c, rule), sid, name)
         for sid, c in centers.items() for name, rule in ARCHETYPES.items()),
        reverse=True,
    )
    names: dict[int, str] = {}
    used: set[str] = set()
    for sid, name in (previous or {}).items():
        if sid in centers and name in ARCHETYPES and score(centers[sid], ARCHETYPES[name]) >= keep_score:
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
            names[sid] = old if old and old not in ARCHETYPES and old not in used else _fallback(sid, c)
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


def score(center: Mapping[str, float], rule: Mapping[str, float]) -> float:
    return sum(w * center.get(f, 0.0) for f, w in rule.items())


def _fallback(sid: int, center: Mapping[str, float]) -> str:
    if not center:
        return f"Segment {sid}"
    feat, z = max(center.items(), key=lambda kv: abs(kv[1]))
    return f"Segment {sid} ({feat} {z:+.1f}sd)"
