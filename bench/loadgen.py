"""ghz, a gRPC load generator written in Go, built once into the cache directory.

On a two-core machine the client shares the cores with the server it measures. A Python
client spends about as much CPU per call as the server does, so the figure it reports is
mostly its own cost; ghz spends a fraction of that, which leaves the cores to the server.
It is built from its Go module with the machine's Go toolchain (``go install``) and kept
under ``$SIGNET_CACHE_DIR/go``, so only the first run pays for the build.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from signet.common.local.gotools import go_cache, go_command, go_env

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.93.0"
PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"


def ghz_binary() -> Path:
    """The ghz executable, built on first use; RuntimeError when Go is missing or fails."""
    binary = go_cache() / "bin" / f"ghz-{GHZ_VERSION}"
    if binary.exists():
        return binary
    go = go_command("to build the ghz load generator")
    proc = subprocess.run(
        [go, "install", f"{GHZ_MODULE}@{GHZ_VERSION}"],
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building ghz failed: {proc.stderr[-2000:]}")
    (go_cache() / "bin" / "ghz").rename(binary)
    return binary


@dataclass(frozen=True)
class LoadResult:
    """What ghz measured: completed calls, calls per second, latency percentiles, failures."""

    count: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int]


def unary_load(
    address: str,
    *,
    proto: str,
    call: str,
    data: dict[str, object],
    metadata: dict[str, str],
    in_flight: int,
    connections: int,
    seconds: float,
) -> LoadResult:
    """Run ghz against one unary method with ``in_flight`` concurrent calls for ``seconds``."""
    proc = subprocess.run(
        [
            str(ghz_binary()),
            "--insecure",
            "--proto",
            str(PROTO_ROOT / proto),
            "--import-paths",
            str(PROTO_ROOT),
            "--call",
            call,
            "--data",
            json.dumps(data),
            "--metadata",
            json.dumps(metadata),
            "--concurrency",
            str(in_flight),
            "--connections",
            str(connections),
            # With one Go processor, ghz's connections all landed on one signer worker
            # (measured: 17 of 17); with two they spread over the SO_REUSEPORT group.
            "--cpus",
            "2",
            "--duration",
            f"{seconds:.0f}s",
            # Calls in flight when the time is up finish and count, not cancelled as errors.
            "--duration-stop",
            "wait",
            "--format",
            "json",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"ghz failed: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    latencies = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"]}
    statuses: dict[str, int] = report.get("statusCodeDistribution") or {}
    return LoadResult(
        count=int(report["count"]),
        rps=float(report["rps"]),
        p50_ms=latencies[50],
        p99_ms=latencies[99],
        errors=sum(n for code, n in statuses.items() if code != "OK"),
        statuses=statuses,
    )
