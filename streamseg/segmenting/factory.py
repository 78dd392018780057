"""Pick a clusterer by name (``STREAMSEG_CLUSTERER``) and bring one back from its snapshot.

>>> seg = build("dbstream", ["a", "b"], n_segments=3, warmup=50, clustering_threshold=2.5)
>>> type(seg).__name__, seg.max_segments
('DBSTREAMSegmenter', 6)
>>> type(restore({**seg.snapshot()})).__name__
'DBSTREAMSegmenter'
>>> build("kmeans", ["a"], bogus=1)
Traceback (most recent call last):
...
streamseg.errors.ConfigError: unknown parameter(s) ['bogus'] for clusterer 'kmeans'; it takes ['halflife', 'n_segments', 'seed', 'version_every', 'warmup']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args

from streamseg.errors import ConfigError
from streamseg.segmenting.base import Segmenter
from streamseg.segmenting.river_denstream import DenStreamSegmenter
from streamseg.segmenting.river_kmeans import RiverKMeansSegmenter
from streamseg.segmenting.river_stream import (
    CluStreamSegmenter,
    DBSTREAMSegmenter,
    StreamKMeansSegmenter,
    StreamSegmenter,
)
from streamseg.settings import Clusterer, Settings

SEGMENTERS: dict[str, type[RiverKMeansSegmenter] | type[StreamSegmenter]] = {
    "kmeans": RiverKMeansSegmenter,
    "streamkmeans": StreamKMeansSegmenter,
    "dbstream": DBSTREAMSegmenter,
    "clustream": CluStreamSegmenter,
    "denstream": DenStreamSegmenter,
}
assert set(SEGMENTERS) == set(get_args(Clusterer))


def accepted_params(kind: str) -> list[str]:
    """Keyword arguments the clusterer ``kind`` takes (besides the feature names)."""
    cls = SEGMENTERS[kind]
    names: set[str] = set()
    for klass in cls.__mro__:
        init: Callable[..., Any] | None = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return sorted(names)


def build(kind: str, features: Sequence[str], **params: Any) -> Segmenter:
    """A fresh segmenter of ``kind``; unknown kinds or parameters are a :class:`ConfigError`."""
    if kind not in SEGMENTERS:
        raise ConfigError(f"unknown clusterer {kind!r}; choose one of {sorted(SEGMENTERS)}")
    unknown = sorted(set(params) - set(accepted_params(kind)))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for clusterer {kind!r}; "
                          f"it takes {accepted_params(kind)}")
    return SEGMENTERS[kind](features, **params)


def from_settings(settings: Settings, features: Sequence[str]) -> Segmenter:
    """The segmenter ``STREAMSEG_CLUSTERER`` names, with the model settings and ``CLUSTERER_PARAMS``."""
    params: dict[str, Any] = {"n_segments": settings.start_segments, "warmup": settings.model_warmup,
                              "seed": settings.seed}
    if settings.clusterer == "kmeans":
        params["halflife"] = settings.kmeans_halflife
    else:
        params["refresh_every"] = settings.model_refresh_every
    return build(settings.clusterer, features, **{**params, **settings.clusterer_kwargs})


def restore(snap: Mapping[str, Any]) -> Segmenter:
    """The segmenter a :meth:`Segmenter.snapshot` came from (plain data; nothing is unpickled)."""
    kind = snap.get("kind")
    if kind not in SEGMENTERS:
        raise ConfigError(f"snapshot of unknown clusterer {kind!r}")
    return SEGMENTERS[kind].restore(dict(snap))
