"""Check the Helm chart with the real tools: helm, kubernetes-validate and promtool.

1. ``helm lint --strict`` with the default values and every ``ci/*.yaml`` values file;
2. ``helm template`` with each of them, the manifests validated by ``kubernetes-validate
   --strict`` against the Kubernetes API schemas;
3. every ``tests/invalid-values/*.yaml`` file must be rejected by ``values.schema.json``;
4. the PrometheusRule rendered with the default values: ``promtool check rules`` and
   ``promtool test rules`` with the chart's rule unit tests;
5. the same unit tests must fail on rules rendered with a changed threshold (burn factor,
   objective, alert delay), so they really pin the thresholds down.

Exits non-zero on the first failure, with the tool's own output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "signet"
KUBE_VERSION = "1.33.0"
RELEASE = "signet"
NAMESPACE = "signet"
# Rule changes the unit tests must notice (helm --set-json): each makes at least one test fail.
THRESHOLD_MUTATIONS: tuple[str, ...] = (
    "sla.burnRates.pageFast.factor=14",
    "sla.burnRates.pageFast.factor=15",
    'sla.burnRates.pageFast.for="5m"',
    "sla.objectivePercent=99.95",
    "sla.badMinuteFailureRatio=0.2",
    "monitoring.prometheusRule.hsmErrorRatio=0.06",
    "monitoring.prometheusRule.kafkaLagMessages=6000",
    "monitoring.prometheusRule.caExpiryCriticalDays=2",
)


# What the default values must render: five services and the prober, each with its objects,
# the monitoring objects and the `helm test` pod.
EXPECTED_DEFAULT_KINDS: dict[str, int] = {
    "Deployment": 6,
    "Service": 11,
    "ServiceAccount": 6,
    "ConfigMap": 7,
    "PodDisruptionBudget": 5,
    "HorizontalPodAutoscaler": 5,
    "NetworkPolicy": 6,
    "ServiceMonitor": 6,
    "PrometheusRule": 1,
    "Pod": 1,
}


class CheckFailed(Exception):
    """One step failed; the message says which and carries the tool's output."""


def run(cmd: list[str], *, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; raise CheckFailed when its success differs from ``expect_ok``."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if (proc.returncode == 0) != expect_ok:
        verdict = "failed" if expect_ok else "succeeded but should have failed"
        raise CheckFailed(f"{' '.join(cmd)} {verdict}:\n{proc.stdout}{proc.stderr}")
    return proc


def helm_binary() -> str:
    """The helm CLI built (once, cached) from its Go module."""
    proc = run(["bash", str(ROOT / "scripts" / "helm-tools.sh")])
    return proc.stdout.strip().splitlines()[-1]


def tool(name: str) -> str:
    """A tool from the virtualenv or PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise CheckFailed(f"{name} is not installed (make system-deps venv)")
    return found


def template(helm: str, *args: str) -> str:
    """Rendered manifests for the given extra helm arguments."""
    cmd = [helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, "--kube-version", KUBE_VERSION]
    return run([*cmd, *args]).stdout


def rules_of(manifests: str) -> dict[str, object]:
    """The ``spec`` of the one PrometheusRule in ``manifests`` (a Prometheus rules file)."""
    rules = [
        doc
        for doc in yaml.safe_load_all(manifests)
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"
    ]
    if len(rules) != 1:
        raise CheckFailed(f"expected one PrometheusRule, rendered {len(rules)}")
    spec: dict[str, object] = rules[0]["spec"]
    return spec


def check_values_files(helm: str, work: Path) -> int:
    """Lint, render and validate with the defaults and each ci values file."""
    validate = tool("kubernetes-validate")
    variants: list[list[str]] = [[]]
    variants += [["-f", str(f)] for f in sorted((CHART / "ci").glob("*.yaml"))]
    for args in variants:
        name = Path(args[1]).name if args else "default values"
        run([helm, "lint", "--strict", str(CHART), *args])
        out = work / f"manifests-{name}.yaml"
        out.write_text(template(helm, *args))
        if not args:
            check_kinds(out.read_text())
        run([validate, "--strict", "--quiet", "-k", KUBE_VERSION, str(out)])
        print(f"ok   lint + template + kubernetes-validate: {name}")
    return len(variants)


def check_kinds(manifests: str) -> None:
    """The default render holds every object the chart promises, no more, no less."""
    kinds: dict[str, int] = {}
    for doc in yaml.safe_load_all(manifests):
        if isinstance(doc, dict):
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    if kinds != EXPECTED_DEFAULT_KINDS:
        raise CheckFailed(f"default render has {kinds}, expected {EXPECTED_DEFAULT_KINDS}")


def check_invalid_values(helm: str) -> int:
    """Every invalid values file is rejected by the schema."""
    files = sorted((CHART / "tests" / "invalid-values").glob("*.yaml"))
    if not files:
        raise CheckFailed("no invalid values files to check the schema with")
    for bad in files:
        cmd = [
            helm,
            "template",
            RELEASE,
            str(CHART),
            "--kube-version",
            KUBE_VERSION,
            "-f",
            str(bad),
        ]
        proc = run(cmd, expect_ok=False)
        if "values don't meet the specifications of the schema" not in proc.stderr:
            raise CheckFailed(
                f"{bad.name} failed for another reason than the schema:\n{proc.stderr}"
            )
        print(f"ok   schema rejects {bad.name}")
    return len(files)


def write_rules_dir(manifests: str, target: Path) -> Path:
    """A directory holding rules.yaml (from ``manifests``) and the chart's rule tests."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "rules.yaml").write_text(yaml.safe_dump(rules_of(manifests), sort_keys=False))
    for test in (CHART / "tests").glob("*_test.yaml"):
        shutil.copy(test, target / test.name)
    return target


def check_rules(helm: str, work: Path) -> None:
    """Run promtool check + unit tests on the default rules, and failure on changed thresholds."""
    promtool = tool("promtool")
    rules_dir = write_rules_dir(template(helm), work / "rules")
    tests = sorted(str(p) for p in rules_dir.glob("*_test.yaml"))
    run([promtool, "check", "rules", str(rules_dir / "rules.yaml")])
    print("ok   promtool check rules")
    run([promtool, "test", "rules", *tests])
    print(f"ok   promtool test rules ({len(tests)} file)")
    for i, change in enumerate(THRESHOLD_MUTATIONS):
        mutated = write_rules_dir(template(helm, "--set-json", change), work / f"mutated-{i}")
        mutated_tests = sorted(str(p) for p in mutated.glob("*_test.yaml"))
        run([promtool, "test", "rules", *mutated_tests], expect_ok=False)
        print(f"ok   rule tests fail with {change}")


def main() -> int:
    """Run every check; 0 when all pass."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        helm = helm_binary()
        with tempfile.TemporaryDirectory(prefix="signet-helm-check-") as tmp:
            work = Path(tmp)
            rendered = check_values_files(helm, work)
            rejected = check_invalid_values(helm)
            check_rules(helm, work)
    except CheckFailed as failure:
        print(f"FAIL {failure}", file=sys.stderr)
        return 1
    print(
        f"helm-check passed: {rendered} value sets rendered and validated, "
        f"{rejected} invalid values files rejected, rules tested against "
        f"{len(THRESHOLD_MUTATIONS)} threshold changes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
