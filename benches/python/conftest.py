"""Benchmarks run only with `make bench` (pytest benches/python --benchmark-only)."""
