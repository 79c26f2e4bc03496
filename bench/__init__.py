"""Signet benchmarks: `make bench` runs every registered benchmark and writes JSON results."""
