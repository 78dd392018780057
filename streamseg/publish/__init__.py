"""Output records (segment updates, dead letters) and their topics."""
