"""Examples that use streamseg as a library."""
