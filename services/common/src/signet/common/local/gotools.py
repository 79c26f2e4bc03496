"""Go programs the local platform and the benchmarks build with the machine's Go toolchain.

Everything Go writes (module downloads, build cache, binaries) stays under
``$SIGNET_CACHE_DIR/go``, so a build leaves nothing in the user's home and a second build
of the same sources is a cache hit. Builds are serialised across processes by a lock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from signet.common.local.kafka import cache_dir, file_lock

# Where Go's own installer puts the toolchain when it is not on PATH.
STANDARD_GO = "/usr/local/go/bin/go"


def go_cache() -> Path:
    """Where Go keeps its module cache, build cache and our binaries."""
    return cache_dir() / "go"


def go_env() -> dict[str, str]:
    """The environment for ``go`` commands: the caches above, modules resolved from go.mod."""
    cache = go_cache()
    env = dict(os.environ)
    env.update(
        {
            "GOPATH": str(cache / "path"),
            "GOMODCACHE": str(cache / "mod"),
            "GOCACHE": str(cache / "build"),
            "GOBIN": str(cache / "bin"),
            "GOFLAGS": "-mod=mod",
        }
    )
    return env


def go_command(why: str) -> str:
    """The ``go`` executable; RuntimeError naming ``why`` it is needed when it is missing."""
    go = shutil.which("go")
    if go is None and os.access(STANDARD_GO, os.X_OK):
        go = STANDARD_GO
    if go is None:
        raise RuntimeError(f"the Go toolchain (go) is needed {why}; install it: make system-deps")
    return go


def build_module(source: Path, name: str, *, timeout: float = 1800) -> Path:
    """Build the Go main package in ``source`` into ``go/bin/<name>-<hash of the sources>``.

    The name carries a hash of the module's files, so edited sources build afresh and an
    unchanged checkout reuses the binary. RuntimeError with Go's message when it fails.
    """
    files = sorted(
        p for p in source.rglob("*") if p.is_file() and p.suffix in {".go", ".mod", ".sum"}
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    binary = go_cache() / "bin" / f"{name}-{digest.hexdigest()[:12]}"
    if binary.exists():
        return binary
    go = go_command(f"to build {name}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(go_cache() / f"{name}.lock"):
        if binary.exists():
            return binary
        partial = binary.with_suffix(".partial")
        proc = subprocess.run(
            [go, "build", "-trimpath", "-o", str(partial), "."],
            cwd=source,
            env=go_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"building {name} failed: {proc.stderr[-2000:]}")
        partial.rename(binary)
    return binary
