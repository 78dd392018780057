"""Fitting :class:`ValueParams` with pymc-marketing's CLV models (in the leader's sample process).

BG/NBD on every customer of the table, Gamma-Gamma on those with repeat purchases and a
positive mean spend, both by maximum a posteriori (``method="map"``: a few hundred ms at
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
from streamseg.value.score import Rfm, rfm_from_state

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
#: Fewer customers (or repeat customers) than this: no fit (the parameters would be noise).
MIN_CUSTOMERS = 20
MIN_REPEAT = 5
COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")


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


def fit_value(rfm: pd.DataFrame | Any, *, version: int = 0, model_version: int = 0,
              fitted_at_ms: float = 0.0, seed: int = 0) -> ValueParams:
    """BG/NBD and Gamma-Gamma point estimates (MAP) on a summary table (see :data:`COLUMNS`).

    ``rfm`` is a DataFrame or anything ``pandas.DataFrame`` takes with those columns.
    Raises :class:`NotEnoughData` below :data:`MIN_CUSTOMERS` customers or
    :data:`MIN_REPEAT` repeat customers.
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
    def point(model: Any, name: str) -> float:
        return float(model.fit_result[name].mean())

    return ValueParams(r=point(bg, "r"), alpha=point(bg, "alpha"), a=point(bg, "a"),
                       b=point(bg, "b"), p=point(gg, "p"), q=point(gg, "q"), v=point(gg, "v"),
                       version=version, model_version=model_version, fitted_at_ms=fitted_at_ms,
                       n_customers=len(data), n_repeat=len(repeat))


def _sort_key(col: pd.Series) -> pd.Series:
    return col.astype(str) if col.name == "customer_id" else col


def fit_states(states: Iterable[Mapping[str, float | str]], now_ms: float, *, version: int,
               model_version: int, seed: int = 0) -> ValueParams | None:
    """:func:`fit_value` on stored states at ``now_ms`` (what the leader's sample process runs);
    None when the sample is too small (logged)."""
    try:
        return fit_value(rfm_table(states, now_ms), version=version, model_version=model_version,
                         fitted_at_ms=now_ms, seed=seed)
    except NotEnoughData as exc:
        log.info("customer value not fitted: %s", exc)
        return None


def _fit_models(data: pd.DataFrame, repeat: pd.DataFrame, seed: int) -> tuple[Any, Any]:
    """The fitted pymc-marketing models (quietly: MAP's progress bar and PyMC's notices)."""
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    bg, gg = BetaGeoModel(), GammaGammaModel()
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
