"""Online segmentation: the Segmenter protocol, River adapters, naming.

The names below are imported on first use (PEP 562): importing one submodule
(``streamseg.segmenting.model`` in the leader's sample process, for instance)
does not load River's clusterers, and with them pandas and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamseg.segmenting.base import Assignment, Segmenter
    from streamseg.segmenting.river_denstream import DenStreamSegmenter
    from streamseg.segmenting.river_kmeans import RiverKMeansSegmenter
    from streamseg.segmenting.river_stream import (
        CluStreamSegmenter,
        DBSTREAMSegmenter,
        StreamKMeansSegmenter,
        StreamSegmenter,
    )

_WHERE = {
    "Assignment": "base", "Segmenter": "base",
    "DenStreamSegmenter": "river_denstream",
    "RiverKMeansSegmenter": "river_kmeans",
    "CluStreamSegmenter": "river_stream", "DBSTREAMSegmenter": "river_stream",
    "StreamKMeansSegmenter": "river_stream", "StreamSegmenter": "river_stream",
}

__all__ = [
    "Assignment",
    "CluStreamSegmenter",
    "DBSTREAMSegmenter",
    "DenStreamSegmenter",
    "RiverKMeansSegmenter",
    "Segmenter",
    "StreamKMeansSegmenter",
    "StreamSegmenter",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'streamseg.segmenting' has no attribute {name!r}")
    return getattr(importlib.import_module(f"streamseg.segmenting.{module}"), name)
