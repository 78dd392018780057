"""streamseg: streaming, real-time customer segmentation."""
__version__ = "0.1.0"
