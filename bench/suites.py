"""The registered benchmarks. Each suite module registers itself on import."""

from __future__ import annotations

import hashlib
import time

from bench import (
    evidence,  # noqa: F401  (registers the evidence benchmark)
    flows,  # noqa: F401  (registers the end-to-end signing flow benchmark)
    signer,  # noqa: F401  (registers the signer benchmark)
)
from bench.harness import REGISTRY, Figures, rate


@REGISTRY.register("baseline_sha256")
def baseline_sha256() -> Figures:
    """Machine baseline: SHA-256 of 1 KiB blocks, so other figures can be read against it."""
    block = b"\x00" * 1024
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < 1.0:
        for _ in range(1000):
            hashlib.sha256(block).digest()
        count += 1000
    return {"sha256_1k_per_s": rate(count, time.perf_counter() - start)}
