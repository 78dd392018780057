"""Input events: pydantic models, decoding and dead-letter records."""

from streamseg.events.decode import DecodeOutcome, decode_message
from streamseg.events.models import ClickEvent, Event, TransactionEvent

__all__ = ["ClickEvent", "DecodeOutcome", "Event", "TransactionEvent", "decode_message"]
