"""Online segmentation: the Segmenter protocol, River adapters, naming."""

from streamseg.segmenting.base import Assignment, Segmenter
from streamseg.segmenting.river_kmeans import RiverKMeansSegmenter

__all__ = ["Assignment", "RiverKMeansSegmenter", "Segmenter"]
