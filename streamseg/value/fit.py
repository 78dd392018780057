"""Fitting :class:`ValueParams` with pymc-marketing's CLV models (in the leader's sample process).

BG/NBD on every customer of the table, Gamma-Gamma on those with repeat purchases and a
positive mean spend, and a second BG/NBD on every sampled customer's *active days* (UTC
days with any event, :data:`ACTIVE_COLUMNS`) for the churn risk's P(alive), all by maximum a
posteriori (``method="map"``: a few hundred ms at
20k customers once compiled, where sampling would take minutes). pymc-marketing, PyMC
and PyTensor are imported here only, so a process that never fits never loads them
(about 250 MiB and two seconds of imports).

PyTensor compiles each model's graph to C the first time; its cache
(``PYTENSOR_FLAGS=base_compiledir=...``, ``~/.pytensor`` by default) keeps the
compiled modules between processes, so only the very first fit on a machine pays it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from streamseg.value.params import ValueParams
from streamseg.value.score import Rfm, active_from_state, rfm_from_state

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
#: Fewer customers (or repeat customers) than this: no fit (the parameters would be noise).
MIN_CUSTOMERS = 20
MIN_REPEAT = 5
#: Scale of Gamma-Gamma's prior on ``p`` (half-normal): the library's default is flat, and when
#: customers' spends hardly vary from day to day the likelihood keeps rising as ``p`` grows, so
#: MAP ran ``p`` off to 1e6-1e136 and stopped wherever its steps broke down, ``q`` and ``p·v``
#: with it (10% apart for the same customers). With a spread of 100 a fit whose data put ``p``
#: below ~5 is the flat one within 0.1%; at 15 it pulls ``p`` ~25% down (spend +0.1%).
GG_P_SIGMA = 100.0
COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")
#: the active-day summary (frequency, recency, T of the days with any event)
ACTIVE_COLUMNS = COLUMNS[:4]


class NotEnoughData(ValueError):
    """Too few customers (or repeat customers) in the sample to fit the model."""


def rfm_table(states: Iterable[Mapping[str, float | str]], now_ms: float) -> pd.DataFrame:
    """The summary table of stored states at ``now_ms``: buyers only (BG/NBD starts at a purchase)."""
    import pandas as pd

    rows = []
    for i, st in enumerate(states):
        if "first_purchase_ts" not in st:
            continue
        r: Rfm = rfm_from_state(st, now_ms)
        rows.append((i, r.frequency, r.recency, r.T, r.monetary_value))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def active_table(states: Iterable[Mapping[str, float | str]], now_ms: float) -> pd.DataFrame:
    """The active-day summary table of stored states at ``now_ms``: every customer with an
    active-day count (buyers or not; ``customer_id`` numbers the states as :func:`rfm_table`'s)."""
    import pandas as pd

    rows = []
    for i, st in enumerate(states):
        a = active_from_state(st, now_ms)
        if a is not None:
            rows.append((i, a.frequency, a.recency, a.T))
    return pd.DataFrame(rows, columns=list(ACTIVE_COLUMNS))


def fit_value(rfm: pd.DataFrame | Any, *, version: int = 0, model_version: int = 0,
              fitted_at_ms: float = 0.0, seed: int = 0,
              active: pd.DataFrame | Any = None) -> ValueParams:
    """BG/NBD and Gamma-Gamma point estimates (MAP) on a summary table (see :data:`COLUMNS`),
    and the active-day BG/NBD on ``active`` (see :data:`ACTIVE_COLUMNS`) when given.

    ``rfm`` is a DataFrame or anything ``pandas.DataFrame`` takes with those columns.
    Raises :class:`NotEnoughData` below :data:`MIN_CUSTOMERS` customers or
    :data:`MIN_REPEAT` repeat customers; an active table of fewer than
    :data:`MIN_CUSTOMERS` customers, or with no repeat active day, is not fitted (the
    parameters have no active-day part).
    """
    import pandas as pd

    data = pd.DataFrame(rfm, columns=list(COLUMNS)) if not isinstance(rfm, pd.DataFrame) else rfm
    data = data[list(COLUMNS)].astype({"frequency": float, "recency": float, "T": float,
                                       "monetary_value": float})
    # One row order for the same customers, whatever order the sample came in: the
    # Gamma-Gamma likelihood is nearly flat along p·v = constant when customers' spends vary
    # little, and where the optimizer stops on that ridge depends on the order of the sums.
    data = data.sort_values([*COLUMNS[1:], "customer_id"], kind="mergesort",
                            key=_sort_key).reset_index(drop=True)
    repeat = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)].reset_index(drop=True)
    if len(data) < MIN_CUSTOMERS or len(repeat) < MIN_REPEAT:
        raise NotEnoughData(f"{len(data)} buyers, {len(repeat)} with repeat purchases: the value "
                            f"model needs {MIN_CUSTOMERS} and {MIN_REPEAT}")
    bg, gg = _fit_models(data, repeat, seed)
    act = _active_data(active)
    act_fit = _fit_active(act, seed) if act is not None else None

    def point(model: Any, name: str) -> float:
        return float(model.fit_result[name].mean())

    extra: dict[str, Any] = {}
    if act_fit is not None and act is not None:
        extra = {f"active_{k}": point(act_fit, k) for k in ("r", "alpha", "a", "b")}
        extra["n_active"] = len(act)
    return ValueParams(r=point(bg, "r"), alpha=point(bg, "alpha"), a=point(bg, "a"),
                       b=point(bg, "b"), p=point(gg, "p"), q=point(gg, "q"), v=point(gg, "v"),
                       version=version, model_version=model_version, fitted_at_ms=fitted_at_ms,
                       n_customers=len(data), n_repeat=len(repeat), **extra)


def _active_data(active: pd.DataFrame | Any) -> pd.DataFrame | None:
    """The active-day table, typed and in one row order (as :func:`fit_value` sorts the
    purchase table); None when too small to fit."""
    import pandas as pd

    if active is None:
        return None
    cols = list(ACTIVE_COLUMNS)
    data = pd.DataFrame(active, columns=cols) if not isinstance(active, pd.DataFrame) else active
    data = data[cols].astype({"frequency": float, "recency": float, "T": float})
    data = data.sort_values([*ACTIVE_COLUMNS[1:], "customer_id"], kind="mergesort",
                            key=_sort_key).reset_index(drop=True)
    if len(data) < MIN_CUSTOMERS or not (data["frequency"] > 0).any():
        log.info("active days not fitted: %d customers", len(data))
        return None
    return data


def _fit_active(data: pd.DataFrame, seed: int) -> Any:
    """The library's BG/NBD fitted (MAP) on the active-day table."""
    from pymc_marketing.clv import BetaGeoModel

    bg = BetaGeoModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _quiet()
        bg.fit(data, method="map", progressbar=False, seed=seed)
    return bg


def _sort_key(col: pd.Series) -> pd.Series:
    return col.astype(str) if col.name == "customer_id" else col


def fit_states(states: Iterable[Mapping[str, float | str]], now_ms: float, *, version: int,
               model_version: int, seed: int = 0) -> ValueParams | None:
    """:func:`fit_value` on stored states at ``now_ms`` (what the leader's sample process runs);
    None when the sample is too small (logged)."""
    states = list(states)
    try:
        return fit_value(rfm_table(states, now_ms), version=version, model_version=model_version,
                         fitted_at_ms=now_ms, seed=seed, active=active_table(states, now_ms))
    except NotEnoughData as exc:
        log.info("customer value not fitted: %s", exc)
        return None


def _fit_models(data: pd.DataFrame, repeat: pd.DataFrame, seed: int) -> tuple[Any, Any]:
    """The fitted pymc-marketing models (quietly: MAP's progress bar and PyMC's notices)."""
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
    from pymc_marketing.prior import Prior

    bg = BetaGeoModel()
    gg = GammaGammaModel(model_config={"p": Prior("HalfNormal", sigma=GG_P_SIGMA),
                                       "q": Prior("HalfFlat"), "v": Prior("HalfFlat")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _quiet()
        bg.fit(data, method="map", progressbar=False, seed=seed)
        gg.fit(repeat, method="map", progressbar=False, seed=seed)
    return bg, gg


def _quiet() -> None:
    for name in ("pymc", "pytensor", "pymc_marketing", "pymc_extras"):
        logging.getLogger(name).setLevel(logging.ERROR)


def rfm_from_transactions(transactions: pd.DataFrame, *, customer_col: str = "customer_id",
                          ts_col: str = "ts", amount_col: str = "amount",
                          refund_col: str | None = "refund",
                          end: Any = None) -> pd.DataFrame:
    """The offline summary of a transaction file, as pymc-marketing's ``rfm_summary`` makes it.

    Orders only (refund rows left out) make frequency, recency, T and the mean spend of
    repeat purchase days; that spend is then scaled by each customer's share not refunded,
    as :func:`~streamseg.value.score.rfm_from_state` does in the stream. ``ts_col`` holds
    datetimes (or epoch milliseconds); ``end`` is the observation end (default: the last one).
    """
    import numpy as np
    import pandas as pd
    from pymc_marketing.clv.utils import rfm_summary

    tx = transactions.copy()
    if not pd.api.types.is_datetime64_any_dtype(tx[ts_col]):
        tx[ts_col] = pd.to_datetime(tx[ts_col], unit="ms")
    refunds = tx[refund_col].astype(bool) if refund_col else pd.Series(False, index=tx.index)
    orders = tx[~refunds]
    # one row per purchase day, its spend summed (lifetimes' convention for daily data)
    daily = (orders.assign(_day=orders[ts_col].dt.floor("D"))
             .groupby([customer_col, "_day"], as_index=False)[amount_col].sum())
    summary = rfm_summary(daily, customer_col, "_day", amount_col, time_unit="D",
                          observation_period_end=end)
    gross = orders.groupby(customer_col)[amount_col].sum()
    refunded = tx[refunds].groupby(customer_col)[amount_col].sum()
    kept = (1.0 - refunded.reindex(gross.index, fill_value=0.0) / gross).clip(lower=0.0)
    summary["monetary_value"] = summary["monetary_value"] * np.asarray(
        kept.reindex(summary["customer_id"]).fillna(0.0))
    return summary


def active_from_transactions(transactions: pd.DataFrame, *, customer_col: str = "customer_id",
                             ts_col: str = "ts", end: Any = None) -> pd.DataFrame:
    """The offline active-day summary (:data:`ACTIVE_COLUMNS`) of an event file: every row
    (order, refund or visit) makes its UTC day active, counted as ``rfm_summary`` counts
    purchase days, to ``end`` (default: the last row's time)."""
    import pandas as pd
    from pymc_marketing.clv.utils import rfm_summary

    tx = transactions[[customer_col, ts_col]].copy()
    if not pd.api.types.is_datetime64_any_dtype(tx[ts_col]):
        tx[ts_col] = pd.to_datetime(tx[ts_col], unit="ms")
    days = tx.assign(_day=tx[ts_col].dt.floor("D")).drop_duplicates([customer_col, "_day"])
    summary = rfm_summary(days, customer_col, "_day", time_unit="D", observation_period_end=end)
    return summary[list(ACTIVE_COLUMNS)]
