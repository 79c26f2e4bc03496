"""A probing round with fake checks: outcomes, metrics and the monthly CSV files."""

from __future__ import annotations

import csv
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from signet.prober.checks import ProbeFailed, tree_head_signed_bytes
from signet.prober.probe import CsvResults, Prober, ProberMetrics, ServiceProbe


@dataclass
class FakeCheck:
    """Fails with ``error`` (when set) and counts its calls."""

    name: str
    error: Exception | None = None
    calls: list[float] = field(default_factory=list)

    def run(self, timeout: float) -> None:
        self.calls.append(timeout)
        if self.error is not None:
            raise self.error


def _clock(when: str) -> float:
    return datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()


def test_a_service_fails_at_its_first_failing_check_and_skips_the_rest(tmp_path: Path) -> None:
    health = FakeCheck("health")
    api = FakeCheck("api", ProbeFailed("UNIMPLEMENTED"))
    never = FakeCheck("after")
    registry = CollectorRegistry()
    prober = Prober(
        [ServiceProbe("identity", [health, api, never]), ServiceProbe("signer", [FakeCheck("x")])],
        7.5,
        ProberMetrics(registry),
        clock=lambda: _clock("2026-11-24T10:15:42"),
    )
    outcomes = {o.service: o for o in prober.round()}
    assert not outcomes["identity"].ok
    assert outcomes["identity"].detail == "api: UNIMPLEMENTED"
    assert outcomes["identity"].minute == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    assert never.calls == []
    assert health.calls == [7.5]
    assert outcomes["signer"].ok
    sample = registry.get_sample_value
    assert sample("signet_prober_minute_success", {"probed_service": "identity"}) == 0
    assert sample("signet_prober_minute_success", {"probed_service": "signer"}) == 1
    assert (
        sample("signet_prober_minutes_total", {"probed_service": "identity", "outcome": "bad"}) == 1
    )


def test_an_unexpected_exception_is_a_failed_call_not_a_crash() -> None:
    check = FakeCheck("api", RuntimeError("boom with details"))
    prober = Prober([ServiceProbe("evidence", [check])], 1, ProberMetrics(CollectorRegistry()))
    (outcome,) = prober.round()
    assert not outcome.ok
    # Only the exception type: its text may hold anything.
    assert outcome.detail == "api: RuntimeError"


def test_csv_rows_go_to_one_file_per_month(tmp_path: Path) -> None:
    now = {"t": _clock("2026-11-30T23:59:10")}
    results = CsvResults(tmp_path)
    prober = Prober(
        [ServiceProbe("signer", [FakeCheck("api")])],
        1,
        ProberMetrics(CollectorRegistry()),
        results,
        clock=lambda: now["t"],
    )
    prober.round()
    now["t"] = _clock("2026-12-01T00:00:05")
    prober.round()
    prober.round()
    nov = list(csv.DictReader((tmp_path / "probes-2026-11.csv").open()))
    dec = list(csv.DictReader((tmp_path / "probes-2026-12.csv").open()))
    assert [r["minute"] for r in nov] == ["2026-11-30T23:59:00Z"]
    assert [r["minute"] for r in dec] == ["2026-12-01T00:00:00Z"] * 2
    assert nov[0]["ok"] == "1"
    assert nov[0]["service"] == "signer"


def test_tree_head_bytes_follow_rfc_6962() -> None:
    signed = tree_head_signed_bytes(0x0102030405060708, 5, bytes(range(32)))
    assert signed[:2] == b"\x00\x01"
    assert signed[2:10] == bytes.fromhex("0102030405060708")
    assert signed[10:18] == (5).to_bytes(8, "big")
    assert signed[18:] == bytes(range(32))
    assert len(signed) == 50


@dataclass
class RendezvousCheck:
    """Waits until every service's check is running at once, then times out like a dead peer."""

    name: str
    barrier: threading.Barrier

    def run(self, timeout: float) -> None:
        self.barrier.wait(timeout=5)  # BrokenBarrierError if the checks ran one after another
        raise ProbeFailed("DEADLINE_EXCEEDED")


def test_services_are_probed_side_by_side_so_timeouts_stay_inside_the_minute() -> None:
    barrier = threading.Barrier(5)
    probes = [ServiceProbe(f"svc-{i}", [RendezvousCheck("api", barrier)]) for i in range(5)]
    outcomes = Prober(probes, 10, ProberMetrics(CollectorRegistry())).round()
    assert [o.service for o in outcomes] == [f"svc-{i}" for i in range(5)]
    assert {o.detail for o in outcomes} == {"api: DEADLINE_EXCEEDED"}
