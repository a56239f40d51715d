"""Benchmarks of the daily plan: `make bench` (python -m bench)."""
