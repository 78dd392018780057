"""Segment profiles: what the customers of each segment look like, in original units.

Profiles are computed from customers' current states (a sample of at most
``profile_sample`` customers, in Redis SCAN order, when there are more) as of
the engine's clock: per segment the mean of every feature, its z-score against
the sampled population (``(segment mean - population mean) / population std``),
the most distinguishing features (largest ``|z|`` among the model's features)
and the mean 30-day spend. Sizes and shares are the exact live counts.

>>> from streamseg.features.registry import derive
>>> states = [{"seg": 0.0, "n_orders": 5.0}, {"seg": 1.0, "n_orders": 0.0}, {"seg": 1.0}]
>>> p = build_profiles(states, [derive(s, 0.0) for s in states], {0: "a", 1: "b", 2: "c"},
...                    {0: 10, 1: 30}, model_version=3)
>>> p[0].share, p[0].means["orders_total"], p[1].means["orders_total"], p[2].size
(0.25, 5.0, 0.0, 0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from streamseg.features.registry import FEATURES, MODEL_FEATURES
from streamseg.publish.records import SegmentProfile

State = Mapping[str, float | str]
TOP_FEATURES = 5


def build_profiles(
    states: Sequence[State], derived: Sequence[Mapping[str, float]], names: Mapping[int, str],
    sizes: Mapping[int, int], model_version: int,
) -> dict[int, SegmentProfile]:
    """One profile per segment in ``names`` (empty ones with size 0 and no means).

    ``derived[i]`` is :func:`~streamseg.features.registry.derive` of ``states[i]``.
    """
    feats = [f.name for f in FEATURES]
    groups: dict[int, list[list[float]]] = {}
    for st, d in zip(states, derived, strict=True):
        seg = st.get("seg")
        if isinstance(seg, float) and int(seg) in names:
            groups.setdefault(int(seg), []).append([d[f] for f in feats])
    rows = {sid: np.array(members) for sid, members in groups.items()}
    if not rows:
        return {}
    everyone = np.vstack(list(rows.values()))
    pop_mean, pop_std = everyone.mean(0), everyone.std(0)
    total = sum(max(0, sizes.get(sid, 0)) for sid in names) or len(everyone)
    in_model = [i for i, f in enumerate(feats) if f in MODEL_FEATURES]
    out = {sid: SegmentProfile(segment_id=sid, name=name, size=0, share=0.0, means={}, zscores={},
                               top_features=[], monetary_mean=0.0, model_version=model_version)
           for sid, name in names.items() if sid not in rows}  # empty segments say so
    for sid, m in rows.items():
        mean = m.mean(0)
        z = np.where(pop_std > 0, (mean - pop_mean) / np.where(pop_std > 0, pop_std, 1.0), 0.0)
        top = sorted(in_model, key=lambda i: -abs(z[i]))[:TOP_FEATURES]
        size = max(0, sizes.get(sid, len(m)))
        out[sid] = SegmentProfile(
            segment_id=sid, name=names[sid], size=size, share=size / total if total else 0.0,
            means={f: float(v) for f, v in zip(feats, mean, strict=True)},
            zscores={f: float(v) for f, v in zip(feats, z, strict=True)},
            top_features=[feats[i] for i in top],
            monetary_mean=float(mean[feats.index("monetary_30d")]), model_version=model_version)
    return out
