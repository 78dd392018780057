"""Example personalization service built on :mod:`streamseg.client` (see ``__main__``)."""
