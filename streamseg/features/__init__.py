"""Per-customer features: registry (pure), keys, Redis store (the only Redis I/O)."""
