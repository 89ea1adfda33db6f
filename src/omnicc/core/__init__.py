"""The domain: pure, synchronous, deterministic. No I/O, no framework, no wall clock."""
