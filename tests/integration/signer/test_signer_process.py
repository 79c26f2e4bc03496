"""The signer as operators run it: a supervisor and worker processes sharing one port.

Real SoftHSM token, SQLite file, token auth. Covers: both workers serve the port, the
parent's /metrics adds up the workers' counters, a killed worker is replaced, and SIGTERM
drains everything with exit code 0 and no process left behind.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from signet.common.auth import hash_token
from signet.common.local.kafka import free_port
from signet.common.local.platform import wait_serving
from signet.common.local.softhsm import TokenInfo
from signet.common.v1 import common_pb2
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.processes import child_pids, kill_with_children, signer_env

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]

TOKEN = "process-test-token"
METADATA = (("authorization", f"Bearer {TOKEN}"),)


@dataclass
class SignerProcess:
    proc: subprocess.Popen[bytes]
    address: str
    metrics_url: str
    log: Path

    def children(self) -> set[int]:
        return child_pids(self.proc.pid)

    def workers(self) -> set[int]:
        """The worker processes (the other child is the signature journal)."""
        return {
            pid
            for pid in self.children()
            if b"signet.signer.journal" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        }


def _wait_serving(address: str) -> None:
    assert wait_serving(address), f"signer at {address} did not become healthy"


@pytest.fixture
def signer_process(softhsm_token: TokenInfo, tmp_path: Path) -> Iterator[SignerProcess]:
    port, metrics_port = free_port(), free_port()
    env = signer_env(softhsm_token, tmp_path, port, metrics_port)
    env["SIGNET_SIGNER_AUTH_MODE"] = "token"
    env["SIGNET_SIGNER_API_TOKEN_HASHES"] = f"evidence:{hash_token(TOKEN)}"
    log = tmp_path / "signer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signet.signer"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running = SignerProcess(
        proc, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", log
    )
    try:
        _wait_serving(running.address)
        yield running
    finally:
        kill_with_children(proc)


def _sign_many(address: str, key_id: str, calls: int) -> None:
    request = signer_pb2.SignDigestRequest(
        key_id=key_id,
        digest=common_pb2.Digest(
            algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=hashlib.sha256(b"p").digest()
        ),
    )
    # Separate connections: the kernel spreads connections, not calls, over the workers.
    channels = [
        grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(8)
    ]
    try:
        for n in range(calls):
            stub = signer_pb2_grpc.SignerServiceStub(channels[n % len(channels)])
            assert stub.SignDigest(request, metadata=METADATA, timeout=10).signature
    finally:
        for channel in channels:
            channel.close()


def _counter(metrics_url: str, method: str, code: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("signet_signer_grpc_requests_total{")
            and f'method="{method}"' in line
            and f'code="{code}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_workers_share_the_port_restart_and_drain(signer_process: SignerProcess) -> None:
    workers = signer_process.workers()
    assert len(workers) == 2
    assert len(signer_process.children()) == 3  # and the journal
    stub = signer_pb2_grpc.SignerServiceStub(grpc.insecure_channel(signer_process.address))
    key = stub.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            purpose=signer_pb2.KEY_PURPOSE_LOG_SIGNING,
            owner=signer_pb2.KeyOwner(system="evidence"),
        ),
        metadata=METADATA,
        timeout=10,
    ).key
    _sign_many(signer_process.address, key.key_id, 200)
    method = "/signet.signer.v1.SignerService/SignDigest"
    assert _counter(signer_process.metrics_url, method, "OK") == 200

    # A worker that dies is replaced; the service keeps answering meanwhile.
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = signer_process.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    assert len(signer_process.workers()) == 2
    assert victim not in signer_process.workers()
    _wait_serving(signer_process.address)
    _sign_many(signer_process.address, key.key_id, 50)

    # So is the journal; while it is down, calls are UNAVAILABLE (retryable, nothing
    # recorded), and afterwards every worker thread reconnects by itself.
    (journal,) = signer_process.children() - signer_process.workers()
    os.kill(journal, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        others = signer_process.children() - signer_process.workers()
        if others and journal not in others:
            break
        time.sleep(0.2)
    assert journal not in signer_process.children()
    before = _counter(signer_process.metrics_url, method, "OK")
    recovered = 0
    codes: set[grpc.StatusCode] = set()
    deadline = time.monotonic() + 30
    while recovered == 0 and time.monotonic() < deadline:
        try:
            _sign_many(signer_process.address, key.key_id, 1)
            recovered = 1
        except grpc.RpcError as err:
            codes.add(err.code())
            time.sleep(0.2)
    assert recovered
    assert codes <= {grpc.StatusCode.UNAVAILABLE}
    # A connection to the dead journal is replaced before anything is sent on it.
    _sign_many(signer_process.address, key.key_id, 100)
    recovered += 100
    assert _counter(signer_process.metrics_url, method, "OK") == before + recovered

    remaining = signer_process.children()
    signer_process.proc.send_signal(signal.SIGTERM)
    assert signer_process.proc.wait(timeout=30) == 0
    for pid in remaining:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_follow_a_supervisor_that_is_killed(signer_process: SignerProcess) -> None:
    children = signer_process.children()
    assert len(children) == 3
    signer_process.proc.kill()
    signer_process.proc.wait()
    deadline = time.monotonic() + 30
    alive = set(children)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.2)
    assert alive == set()
