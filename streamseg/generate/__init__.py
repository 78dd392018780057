"""Synthetic event generator: planted personas (ground truth) -> Kafka events."""

from streamseg.generate.personas import (
    DEFAULT_WEIGHTS,
    PERSONAS,
    GeneratedEvent,
    Persona,
    assign_personas,
    simulate,
)
from streamseg.generate.producer import GenerateStats, produce, read_truth, write_truth

__all__ = [
    "DEFAULT_WEIGHTS",
    "PERSONAS",
    "GenerateStats",
    "GeneratedEvent",
    "Persona",
    "assign_personas",
    "produce",
    "read_truth",
    "simulate",
    "write_truth",
]
