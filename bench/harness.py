"""A small benchmark harness: registered benchmarks, timing helpers and the JSON report.

Speed targets are checked here, by measurement, never by timed tests. Each benchmark
returns named figures; the harness prints them and writes one JSON file per run under
bench/results/ together with the machine's core count and the Python version, plus a short
markdown summary (``summary.md``) with every figure, the ratios and the declared targets,
each marked met or missed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"

Figures = dict[str, float]


@dataclass(frozen=True)
class Target:
    """A goal for one figure: ``figure`` must be at least (or at most) ``bound``."""

    figure: str
    bound: float
    at_least: bool = True

    def met(self, figures: Figures) -> bool | None:
        """Whether ``figures`` meet the target; None when the figure was not measured."""
        value = figures.get(self.figure)
        if value is None or value != value:  # NaN: not measured
            return None
        return value >= self.bound if self.at_least else value <= self.bound

    def describe(self) -> str:
        """E.g. ``sign_batch_ratio_to_ceiling >= 0.75``."""
        return f"{self.figure} {'>=' if self.at_least else '<='} {self.bound:g}"


@dataclass
class Benchmark:
    """One named benchmark; ``run`` returns its figures (throughputs, latencies, ratios)."""

    name: str
    run: Callable[[], Figures]
    targets: tuple[Target, ...] = ()


@dataclass
class Registry:
    """The benchmarks `make bench` runs, in registration order."""

    items: list[Benchmark] = field(default_factory=list)

    def register(
        self, name: str, targets: tuple[Target, ...] = ()
    ) -> Callable[[Callable[[], Figures]], Callable[[], Figures]]:
        """Decorator adding a benchmark function under ``name``, with its ``targets``."""

        def wrap(fn: Callable[[], Figures]) -> Callable[[], Figures]:
            self.items.append(Benchmark(name, fn, targets))
            return fn

        return wrap


REGISTRY = Registry()


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``samples`` by nearest rank."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def rate(count: int, seconds: float) -> float:
    """Operations per second."""
    return count / seconds if seconds > 0 else float("nan")


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summarize_latencies(prefix: str, samples: list[float]) -> Figures:
    """p50/p99/mean in milliseconds under ``prefix``."""
    return {
        f"{prefix}_p50_ms": percentile(samples, 50) * 1000,
        f"{prefix}_p99_ms": percentile(samples, 99) * 1000,
        f"{prefix}_mean_ms": statistics.fmean(samples) * 1000 if samples else float("nan"),
    }


def _cell(value: float) -> str:
    """A figure with the precision its size calls for (ratios, milliseconds, rates)."""
    if abs(value) < 10:
        return f"{value:.3f}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def markdown_summary(report: Mapping[str, object], benches: list[Benchmark]) -> str:
    """The run as markdown: machine, every figure per benchmark, and the targets met or missed."""
    results = report["results"]
    assert isinstance(results, dict)
    machine = report["machine"]
    assert isinstance(machine, dict)
    lines = [
        f"# Benchmark summary ({report['time']})",
        "",
        f"{machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}.",
        "",
    ]
    verdicts: list[str] = []
    for bench in benches:
        figures = results.get(bench.name)
        if figures is None:
            continue
        lines += [f"## {bench.name}", "", "| figure | value |", "|---|---:|"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in figures.items()]
        lines.append("")
        for target in bench.targets:
            met = target.met(figures)
            mark = "not measured" if met is None else ("met" if met else "MISSED")
            value = figures.get(target.figure, float("nan"))
            verdicts.append(f"| {bench.name} | {target.describe()} | {_cell(value)} | {mark} |")
    if verdicts:
        lines += [
            "## Targets",
            "",
            "| benchmark | target | measured | verdict |",
            "|---|---|---:|---|",
        ]
        lines += [*verdicts, ""]
    return "\n".join(lines)


def run_all(selected: list[str] | None = None) -> Path:
    """Run the registered benchmarks (or the ``selected`` names) and write the JSON report."""
    results: dict[str, Figures] = {}
    chosen = [b for b in REGISTRY.items if not selected or b.name in selected]
    for bench in chosen:
        print(f"== {bench.name}")
        figures = bench.run()
        for key, value in figures.items():
            print(f"   {key:<40} {value:12.2f}")
        results[bench.name] = figures
    report = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"bench-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (RESULTS_DIR / "latest.json").write_text(out.read_text())
    summary = markdown_summary(report, chosen)
    out.with_suffix(".md").write_text(summary)
    (RESULTS_DIR / "summary.md").write_text(summary)
    print(summary)
    print(f"results written to {out} and {out.with_suffix('.md')}")
    return out
