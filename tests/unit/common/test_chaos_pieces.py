"""The pieces of ``make chaos`` that need no platform: replica layout, SIGKILL of a whole
process group, the fault schedule, per-minute availability and the reconciliation."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.chaos.faults import FaultInjector, FaultPlan
from bench.chaos.flows import FlowOutcome
from bench.chaos.reconcile import per_minute, reconcile, sla_rows
from signet.common.local import platform
from signet.common.local.processes import alive
from signet.prober.sla import Month
from signet.prober.slasource import read_csv

T0 = datetime(2026, 12, 3, 10, 0, 5, tzinfo=UTC)


def test_replicas_get_distinct_ports_and_every_target_lists_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIGNET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNET_LOCAL_PORT_OFFSET", "3000")
    monkeypatch.setenv("SIGNET_LOCAL_REPLICAS", "2")
    procs = platform.services()
    assert len(procs) == 10
    assert len({p.grpc_port for p in procs}) == 10
    assert len(set(platform.local_ports())) == len(platform.local_ports())
    signers = platform.replicas_of("signer")
    assert [s.instance for s in signers] == ["signer", "signer-2"]
    env = platform.service_env(procs[0], {}, "127.0.0.1:1")
    assert env["SIGNET_SIGNER_IDENTITY_TARGETS"] == "127.0.0.1:53051,127.0.0.1:53151"
    # Both replicas of a service share its database.
    env2 = platform.service_env(signers[1], {}, "127.0.0.1:1")
    assert env2["SIGNET_SIGNER_DATABASE_URL"] == env["SIGNET_SIGNER_DATABASE_URL"]
    assert env2["SIGNET_SIGNER_GRPC_PORT"] == "53153"


def test_replica_count_must_be_a_small_whole_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNET_LOCAL_REPLICAS", "two")
    with pytest.raises(ValueError, match="whole number"):
        platform.replica_count()
    monkeypatch.setenv("SIGNET_LOCAL_REPLICAS", "0")
    with pytest.raises(ValueError, match="between 1 and 9"):
        platform.replica_count()


def test_kill_replica_kills_the_process_group_and_forgets_the_pid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIGNET_STATE_DIR", str(tmp_path))
    (tmp_path / "run").mkdir()
    # A parent with a child, like the signer's supervisor and its worker.
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    victim = platform.ServiceProcess("notify", "notify", 1, 2, replica=1)
    pid_file = tmp_path / "run" / "notify-2.pid"
    pid_file.write_text(str(proc.pid))
    children: list[str] = []
    deadline = time.monotonic() + 30
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        children = subprocess.run(
            ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
    assert len(children) == 2
    assert platform.kill_replica(victim)
    # kill_replica reaps its child itself (the platform's processes are the caller's).
    assert not alive(proc.pid)
    for pid in children:
        deadline = time.monotonic() + 10
        while alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(int(pid)) or _is_zombie(int(pid))
    assert not pid_file.exists()
    assert not platform.kill_replica(victim)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_fault_schedule_kills_and_restarts_then_stops_the_broker_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIGNET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNET_LOCAL_REPLICAS", "2")
    actions: list[str] = []

    def record(action: str, result: bool = True) -> bool:
        actions.append(action)
        return result

    injector = FaultInjector(
        FaultPlan(duration=1.0, kill_every=0.3, broker_down_at=0.2, broker_down_for=0.3, seed=7),
        kill=lambda svc: record("kill " + svc.instance),
        restart=lambda svc: record("start " + svc.instance),
        stop_broker=lambda: actions.append("broker-stop"),
        start_broker=lambda: actions.append("broker-start"),
    )
    injector.start()
    injector.join()
    kills = [a for a in actions if a.startswith("kill")]
    assert len(kills) == 3  # at 0.3, 0.6 and 0.9 s of a 1 s run
    for kill in kills:
        assert actions[actions.index(kill) + 1 :].count("start " + kill.split()[1]) >= 1
    assert actions.count("broker-stop") == 1 and actions.count("broker-start") == 1
    assert actions.index("broker-stop") < actions.index("broker-start")
    assert [e.action for e in injector.events].count("sigkill") == 3


def test_a_service_whose_replica_did_not_come_back_is_not_killed_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIGNET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNET_LOCAL_REPLICAS", "2")
    killed: list[str] = []

    def kill(svc: platform.ServiceProcess) -> bool:
        killed.append(svc.name)
        return True

    injector = FaultInjector(
        FaultPlan(duration=2.0, kill_every=0.1, broker_down_at=99, seed=1),
        kill=kill,
        restart=lambda svc: False,
    )
    injector.start()
    injector.join()
    # Each failed restart removes that service from the candidates: 5 services, 5 kills.
    assert sorted(killed) == sorted({"signer", "identity", "ca-gateway", "evidence", "notify"})


def _flow(minute: int, second: int, ok: bool, signature: str = "") -> FlowOutcome:
    start = T0 + timedelta(minutes=minute, seconds=second)
    return FlowOutcome(start, ok, 0.1, signature, "" if ok else "UNAVAILABLE: down")


def test_minutes_count_attempts_and_successes_and_feed_the_sla_csv() -> None:
    outcomes = [_flow(0, 1, True), _flow(0, 2, False), _flow(1, 0, True), _flow(1, 30, True)]
    minutes = per_minute(outcomes)
    assert [(m.attempted, m.succeeded, m.ok) for m in minutes] == [(2, 1, False), (2, 2, True)]
    text = sla_rows(minutes)
    parsed = read_csv(io.StringIO(text), Month.parse("2026-12"))
    (series,) = parsed.values()
    assert list(series.values()) == [False, True]


def test_reconciliation_finds_lost_duplicated_and_unknown_events() -> None:
    signatures = {"e1": "s1", "e2": "s2", "e3": "s3"}
    result = reconcile(
        signatures,
        evidence_event_ids=["e1", "e2", "e2", "e3"],
        webhook_deliveries=[("e1", "n1"), ("e3", "n3"), ("e3", "n3b"), ("e9", "n9")],
        succeeded_signature_ids=["s1", "s2", "s7"],
    )
    assert result.evidence_duplicated == ("e2",)
    assert result.evidence_missing == ()
    assert result.webhook_missing == ("e2",)
    # Two distinct deliveries of one event: a receiver would process it twice.
    assert result.webhook_duplicated == ("e3",)
    assert result.unknown == ("e9",)
    assert result.flows_without_record == ("s7",)
    assert (result.lost, result.duplicated, result.clean) == (1, 2, False)


def test_same_delivery_sent_again_is_a_redelivery_not_a_duplicate() -> None:
    signatures = {"e1": "s1", "e2": "s2"}
    result = reconcile(signatures, ["e1", "e2"], [("e1", "n1"), ("e2", "n2"), ("e2", "n2")])
    assert result.webhook_redelivered == ("e2",)
    assert result.webhook_duplicated == ()
    assert (result.webhook_deliveries, result.webhook_receptions) == (2, 3)
    assert result.clean


def test_reconciliation_of_a_complete_run_is_clean() -> None:
    signatures = {"e1": "s1", "e2": "s2"}
    result = reconcile(signatures, ["e2", "e1"], [("e1", "n1"), ("e2", "n2")], ["s1", "s2"])
    assert result.clean and result.lost == 0 and result.duplicated == 0


def test_sdk_local_endpoints_list_every_replica(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from signet.sdk import Endpoints

    monkeypatch.setenv("SIGNET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNET_LOCAL_PORT_OFFSET", "3000")
    monkeypatch.setenv("SIGNET_LOCAL_REPLICAS", "2")
    endpoints = Endpoints.local()
    assert endpoints.signer == ("127.0.0.1:53053", "127.0.0.1:53153")
    assert endpoints.of("ca-gateway") == ("127.0.0.1:53052", "127.0.0.1:53152")
