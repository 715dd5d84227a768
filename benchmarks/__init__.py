"""Hand-run benchmarks (not part of CI)."""
