"""The signer front's own Go checks, as part of the suite: gofmt, go vet and go test.

The Go tests drive the front against fake workers (unary and streaming pass-through,
coalescing, per-call outcomes, batch failures, deadlines, mTLS peer names, drain); the
Python tests beside this one run it with the real workers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from signet.common.local.gotools import go_command, go_env
from signet.signer import front

pytestmark = pytest.mark.slow


def _go(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [go_command("to check the signer front"), *args],
        cwd=front.SOURCE,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def test_front_sources_are_gofmt_clean() -> None:
    # gofmt ships beside go in every Go toolchain.
    gofmt = Path(go_command("to check the signer front")).resolve().parent / "gofmt"
    listed = subprocess.run(
        [str(gofmt), "-l", "."], cwd=front.SOURCE, capture_output=True, text=True, check=True
    )
    assert listed.stdout == "", f"not gofmt-formatted: {listed.stdout}"


def test_front_go_vet_and_go_test_pass() -> None:
    vet = _go("vet", "./...")
    assert vet.returncode == 0, vet.stdout + vet.stderr
    tests = _go("test", "-count=1", "./...")
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-4000:]
