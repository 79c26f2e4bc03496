"""The benchmark harness's markdown summary and target verdicts."""

from __future__ import annotations

from bench.harness import Benchmark, Target, markdown_summary


def _report(figures: dict[str, float]) -> dict[str, object]:
    return {
        "time": "2026-01-01T00:00:00+00:00",
        "machine": {"cpus": 2, "python": "3.11", "platform": "linux"},
        "results": {"signer": figures},
    }


def test_target_at_least_and_at_most() -> None:
    assert Target("x", 2.0).met({"x": 2.0}) is True
    assert Target("x", 2.0).met({"x": 1.9}) is False
    assert Target("p99", 25.0, at_least=False).met({"p99": 30.0}) is False
    assert Target("p99", 25.0, at_least=False).met({"p99": 20.0}) is True


def test_target_not_measured_when_figure_missing_or_nan() -> None:
    assert Target("x", 1.0).met({}) is None
    assert Target("x", 1.0).met({"x": float("nan")}) is None


def test_summary_lists_figures_and_marks_missed_targets() -> None:
    bench = Benchmark(
        "signer",
        lambda: {},
        (Target("ratio", 0.75), Target("p99_ms", 25.0, at_least=False)),
    )
    text = markdown_summary(_report({"ratio": 0.8, "p99_ms": 48.0}), [bench])
    assert "| ratio | 0.800 |" in text
    assert "| signer | ratio >= 0.75 | 0.800 | met |" in text
    assert "| signer | p99_ms <= 25 | 48.0 | MISSED |" in text


def test_summary_skips_benchmarks_that_did_not_run() -> None:
    bench = Benchmark("evidence", lambda: {}, (Target("appends", 1.0),))
    text = markdown_summary(_report({"ratio": 1.0}), [bench])
    assert "## evidence" not in text
    assert "## Targets" not in text
