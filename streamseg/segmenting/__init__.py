"""Online segmentation: the Segmenter protocol, River adapters, naming."""

from streamseg.segmenting.base import Assignment, Segmenter
from streamseg.segmenting.river_denstream import DenStreamSegmenter
from streamseg.segmenting.river_kmeans import RiverKMeansSegmenter
from streamseg.segmenting.river_stream import (
    CluStreamSegmenter,
    DBSTREAMSegmenter,
    StreamKMeansSegmenter,
    StreamSegmenter,
)

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
