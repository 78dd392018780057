"""Replay history files into the input topics: ``streamseg replay PATH...``.

``readers`` splits files into rows, ``mapping`` turns rows into contract
events, ``spool`` parks them on disk for the event-time sort, ``runner``
validates, sorts, paces and sends, and ``progress`` shows how far it got.
"""

from streamseg.replay.mapping import Mapping
from streamseg.replay.runner import ReplayOptions, ReplaySummary, format_summary, replay

__all__ = ["Mapping", "ReplayOptions", "ReplaySummary", "format_summary", "replay"]
