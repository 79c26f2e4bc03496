"""``make run`` / ``make status`` / ``make stop`` as a newcomer uses them, on shifted ports.

The real thing: a SoftHSM token, a Kafka broker from its Maven artifacts and the five
service processes, each migrated and answering SERVING on gRPC health and /metrics; stop
leaves no process, pid file or broker behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from signet.common.local import platform

pytestmark = [pytest.mark.kafka, pytest.mark.softhsm, pytest.mark.slow]


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_offset() -> int:
    for offset in range(3000, 9000, 500):
        ports = [p + offset for _, _, g, m in platform._BASE for p in (g, m)]
        ports += [platform.KAFKA_PORT + offset, platform.KAFKA_CONTROLLER_PORT + offset]
        if all(_free(p) for p in ports):
            return offset
    pytest.fail("no free block of local ports for the platform")


def _cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signet.common.local.platform", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_run_status_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offset = _pick_offset()
    env = dict(os.environ)
    env["SIGNET_STATE_DIR"] = str(tmp_path / "state")
    env["SIGNET_LOCAL_PORT_OFFSET"] = str(offset)
    monkeypatch.setenv("SIGNET_STATE_DIR", env["SIGNET_STATE_DIR"])
    monkeypatch.setenv("SIGNET_LOCAL_PORT_OFFSET", str(offset))
    try:
        started = _cli("start", env)
        assert started.returncode == 0, started.stdout + started.stderr
        for svc in platform.services():
            assert svc.grpc_port == dict((b[0], b[2]) for b in platform._BASE)[svc.name] + offset
            assert platform.health_status(svc.address) == "SERVING", svc.name
            url = f"http://127.0.0.1:{svc.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode()
            prefix = "signet_" + svc.package
            assert f"# TYPE {prefix}_grpc_requests_total counter" in text
            assert (tmp_path / "state" / "db" / f"{svc.name}.db").exists()
        again = _cli("start", env)  # idempotent: nothing new is spawned
        assert again.returncode == 0, again.stderr
        status = _cli("status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("SERVING") == 5
        pids = [
            int((tmp_path / "state" / "run" / f"{s.name}.pid").read_text())
            for s in platform.services()
        ]
    finally:
        stopped = _cli("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not list((tmp_path / "state" / "run").glob("*.pid"))
    assert not platform._broker().is_running()
    assert _cli("status", env).returncode != 0
