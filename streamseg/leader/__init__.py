"""What only the leader does: merge workers' models, re-fit, keep the catalog and profiles."""

from __future__ import annotations

from streamseg.leader.leader import CustomerSample, Leader

__all__ = ["CustomerSample", "Leader"]
