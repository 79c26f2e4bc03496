"""The Helm chart passes `make helm-check`: real helm, kubernetes-validate and promtool.

The check builds helm from its Go module once (cached), so the first run on a machine is
slow and later ones take about a minute.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_helm_check_lints_renders_validates_and_tests_the_rules() -> None:
    proc = subprocess.run(
        ["make", "--no-print-directory", "helm-check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "helm-check passed" in proc.stdout
    assert "schema rejects replicas-string.yaml" in proc.stdout
    assert "rule tests fail with sla.burnRates.pageFast.factor=14" in proc.stdout
