"""`python -m bench [NAME ...]`: run the benchmarks and write bench/results/*.json."""

from __future__ import annotations

import sys

from bench import suites  # noqa: F401  (registers the benchmarks)
from bench.harness import run_all

if __name__ == "__main__":
    run_all(sys.argv[1:] or None)
