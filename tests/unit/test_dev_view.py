"""`streamseg dev`'s view: the notes that say what an alert shows (no network)."""

from __future__ import annotations

from collections import Counter

from streamseg.devstack.dev import Snapshot, render_drift

LAPSED = Counter({"lapsing": 240, "bargain_hunter": 30, "window_shopper": 10})


def view(alerts: set[str], active: float = 0.02) -> str:
    snap = Snapshot(at=0.0, drift={"1w": {"customers": 6400, "shift": 0.07, "active": active}},
                    alerts={("1w", a) for a in alerts})
    return "\n".join(render_drift(snap, LAPSED))


def test_a_churn_risk_alert__notes_which_planted_personas_fill_the_high_band() -> None:
    text = view({"value_at_risk"})
    assert ("note: 1w: the high churn-risk band holds 280 customers, planted as lapsing 240 "
            "(86%), bargain_hunter 30 (11%), window_shopper 10 (4%); lapsing: Buys like a "
            "regular early on, then goes silent") in text
    assert "population growth" not in text


def test_no_churn_risk_alert__no_high_band_note() -> None:
    text = view({"composition_shift"}, active=0.3)
    assert "high churn-risk band" not in text
    assert "population growth" in text


def test_no_customer_in_the_high_band__no_note() -> None:
    snap = Snapshot(at=0.0, drift={"1w": {"customers": 6400}}, alerts={("1w", "high_risk_share")})
    assert "note" not in "\n".join(render_drift(snap, Counter()))
