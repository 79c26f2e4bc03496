"""The signer with its front, as deployed: the compiled front on the port, workers behind it.

Real SoftHSM token, SQLite file, token auth, the front built from services/signer/front.
Covers: every kind of call passes through (unary, SignBatch, health); concurrent SignDigest
calls of several callers each get their own signature or their own status, never another
caller's; each request's transaction id reaches its event; the per-request SignDigest
metrics, also when a whole coalesced call fails; the internal service is not reachable
from outside; a killed front is replaced; SIGTERM drains everything with exit code 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from signet.common.auth import FRONT_PEER_HEADER, hash_token
from signet.common.events import decode_envelope
from signet.common.local.kafka import free_port
from signet.common.local.platform import wait_serving
from signet.common.local.softhsm import TokenInfo
from signet.common.v1 import common_pb2
from signet.signer import front
from signet.signer.v1 import signer_pb2, signer_pb2_grpc, worker_pb2, worker_pb2_grpc
from tests.fixtures.processes import child_pids, kill_with_children, signer_env
from tests.fixtures.tls import write_test_pki

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]

TOKENS = {"evidence": "front-test-evidence", "ca-gateway": "front-test-ca"}
SIGN_DIGEST = "/signet.signer.v1.SignerService/SignDigest"
SIGN_DIGESTS = "/signet.signer.v1.SignerWorkerService/SignDigests"


def _metadata(principal: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[principal]}"),)


@dataclass
class FrontedSigner:
    proc: subprocess.Popen[bytes]
    address: str
    metrics_url: str
    database: Path

    def children(self) -> dict[int, bytes]:
        found = {}
        for pid in child_pids(self.proc.pid):
            with contextlib.suppress(OSError):
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        return found

    def front_pid(self) -> int | None:
        return next((p for p, cmd in self.children().items() if front.NAME.encode() in cmd), None)

    def sample(self, name: str, **labels: str) -> float:
        """One sample of the supervisor's /metrics (0 when absent)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def counter(self, method: str, code: str) -> float:
        return self.sample("signet_signer_grpc_requests_total", method=method, code=code)


@pytest.fixture(scope="module")
def front_binary() -> Path:
    return front.build()


@contextlib.contextmanager
def _fronted_signer(
    token: TokenInfo, directory: Path, binary: Path, auth: dict[str, str], port: int = 0
) -> Iterator[FrontedSigner]:
    port, metrics_port = port or free_port(), free_port()
    env = signer_env(token, directory, port, metrics_port)
    env["SIGNET_SIGNER_FRONT_BINARY"] = str(binary)
    env.update(auth)
    log = directory / "signer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signet.signer"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running = FrontedSigner(
        proc,
        f"127.0.0.1:{port}",
        f"http://127.0.0.1:{metrics_port}/metrics",
        directory / "signer.db",
    )
    try:
        yield running
    finally:
        kill_with_children(proc)


_TOKEN_AUTH = {
    "SIGNET_SIGNER_AUTH_MODE": "token",
    "SIGNET_SIGNER_API_TOKEN_HASHES": ",".join(
        f"{name}:{hash_token(token)}" for name, token in TOKENS.items()
    ),
}


@pytest.fixture
def fronted(
    softhsm_token: TokenInfo, tmp_path: Path, front_binary: Path
) -> Iterator[FrontedSigner]:
    with _fronted_signer(softhsm_token, tmp_path, front_binary, _TOKEN_AUTH) as running:
        assert wait_serving(running.address), (tmp_path / "signer.log").read_text()[-3000:]
        yield running


def _time_wait_on(port: int) -> bool:
    """Whether a TCP connection with local port ``port`` is in TIME_WAIT (state 06)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(
        int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "06" for f in map(str.split, lines)
    )


def _create_key(
    stub: signer_pb2_grpc.SignerServiceStub, owner: str
) -> tuple[str, ec.EllipticCurvePublicKey]:
    key = stub.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            purpose=signer_pb2.KEY_PURPOSE_LOG_SIGNING,
            owner=signer_pb2.KeyOwner(system=owner),
        ),
        metadata=_metadata(owner),
        timeout=10,
    ).key
    public = stub.GetPublicKey(
        signer_pb2.GetPublicKeyRequest(key_id=key.key_id), metadata=_metadata(owner), timeout=10
    ).public_key
    loaded = serialization.load_der_public_key(public.spki_der)
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    return key.key_id, loaded


def _digest_request(key_id: str, n: int, *, length: int = 32) -> signer_pb2.SignDigestRequest:
    return signer_pb2.SignDigestRequest(
        key_id=key_id,
        digest=common_pb2.Digest(
            algorithm=common_pb2.HASH_ALGORITHM_SHA256,
            value=hashlib.sha256(str(n).encode()).digest()[:length],
        ),
        transaction_id=f"txn-{n}",
    )


def test_concurrent_callers_each_get_their_own_outcome(fronted: FrontedSigner) -> None:
    channels = [
        grpc.insecure_channel(fronted.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(4)
    ]
    stubs = [signer_pb2_grpc.SignerServiceStub(c) for c in channels]
    evidence_key, evidence_public = _create_key(stubs[0], "evidence")
    ca_key, ca_public = _create_key(stubs[0], "ca-gateway")
    publics = {evidence_key: evidence_public, ca_key: ca_public}

    # (caller, request, expected code): good calls of two callers, mixed with bad ones.
    cases: list[tuple[str, signer_pb2.SignDigestRequest, grpc.StatusCode]] = []
    for n in range(240):
        kind = n % 6
        if kind == 0:
            cases.append(("evidence", _digest_request("key-missing", n), grpc.StatusCode.NOT_FOUND))
        elif kind == 1:
            cases.append(
                (
                    "evidence",
                    _digest_request(evidence_key, n, length=20),
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
            )
        elif kind == 2:
            # Evidence may not use the CA's key: refused, whoever shares its batch.
            cases.append(
                ("evidence", _digest_request(ca_key, n), grpc.StatusCode.PERMISSION_DENIED)
            )
        elif kind == 3:
            cases.append(("ca-gateway", _digest_request(ca_key, n), grpc.StatusCode.OK))
        else:
            cases.append(("evidence", _digest_request(evidence_key, n), grpc.StatusCode.OK))

    def call(index: int) -> tuple[grpc.StatusCode, signer_pb2.SignDigestResponse | None]:
        caller, request, _ = cases[index]
        try:
            reply = stubs[index % len(stubs)].SignDigest(
                request, metadata=_metadata(caller), timeout=30
            )
        except grpc.RpcError as err:
            return err.code(), None
        return grpc.StatusCode.OK, reply

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(call, range(len(cases))))

    signature_ids = set()
    for (caller, request, expected), (code, reply) in zip(cases, outcomes, strict=True):
        assert code == expected, (caller, request.key_id, request.transaction_id)
        if reply is None:
            continue
        assert reply.key_id == request.key_id
        # The signature is over this caller's own digest, by the key it named.
        publics[request.key_id].verify(
            reply.signature,
            request.digest.value,
            ec.ECDSA(utils.Prehashed(hashes.SHA256())),
        )
        signature_ids.add(reply.signature_id)
    signed = sum(1 for c in cases if c[2] == grpc.StatusCode.OK)
    assert len(signature_ids) == signed

    # Every call counted once as SignDigest with its own code, and the calls reached the
    # workers through the internal SignDigests.
    assert fronted.counter(SIGN_DIGEST, "OK") == signed
    assert fronted.counter(SIGN_DIGEST, "NOT_FOUND") == 40
    assert fronted.counter(SIGN_DIGEST, "INVALID_ARGUMENT") == 40
    assert fronted.counter(SIGN_DIGEST, "PERMISSION_DENIED") == 40
    assert fronted.counter(SIGN_DIGESTS, "OK") >= 1
    # The front's own figures are in the same /metrics: each call it answered, and the
    # groups it sent (every one of the 240 calls went in some group).
    front_calls = "signet_signer_front_calls_total"
    assert fronted.sample(front_calls, method=SIGN_DIGEST, code="OK") == signed
    assert fronted.sample(front_calls, method=SIGN_DIGEST, code="PERMISSION_DENIED") == 40
    assert fronted.sample("signet_signer_front_batch_size_sum") == len(cases)
    assert fronted.sample("signet_signer_front_queue_wait_seconds_count") == len(cases)
    assert fronted.sample("signet_signer_front_workers_ready") == 2

    # Each signature's event carries the transaction id of the request it answered.
    with contextlib.closing(sqlite3.connect(fronted.database)) as db:
        rows = db.execute("SELECT envelope FROM outbox").fetchall()
    transactions = {
        decode_envelope(row[0]).transaction_id
        for row in rows
        if decode_envelope(row[0]).type.endswith("SignatureCreated")
    }
    expected_transactions = {r.transaction_id for _, r, code in cases if code == grpc.StatusCode.OK}
    assert transactions == expected_transactions
    for channel in channels:
        channel.close()


def test_other_calls_pass_through_and_internal_service_is_hidden(fronted: FrontedSigner) -> None:
    channel = grpc.insecure_channel(fronted.address)
    stub = signer_pb2_grpc.SignerServiceStub(channel)
    key_id, public = _create_key(stub, "evidence")

    batch = stub.SignBatch(
        signer_pb2.SignBatchRequest(
            items=[
                signer_pb2.SignBatchItem(
                    item_id=str(n), key_id=key_id, digest=_digest_request(key_id, n).digest
                )
                for n in range(5)
            ]
        ),
        metadata=_metadata("evidence"),
        timeout=10,
    )
    assert [r.status.code for r in batch.results] == [0] * 5

    # The callers' errors come back with their code and message, as from the workers.
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetKey(signer_pb2.GetKeyRequest(key_id="key-nope"), metadata=_metadata("evidence"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "key-nope" in (missing.value.details() or "")
    with pytest.raises(grpc.RpcError) as anonymous:
        stub.SignDigest(_digest_request(key_id, 1), timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The front's peer header means nothing from a caller (and is stripped anyway).
    with pytest.raises(grpc.RpcError) as spoofed:
        stub.SignDigest(
            _digest_request(key_id, 1), metadata=((FRONT_PEER_HEADER, "evidence"),), timeout=10
        )
    assert spoofed.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # The workers' internal service is not reachable from outside, even with credentials.
    internal = worker_pb2_grpc.SignerWorkerServiceStub(channel)
    with pytest.raises(grpc.RpcError) as hidden:
        internal.SignDigests(
            worker_pb2.SignDigestsRequest(requests=[_digest_request(key_id, 2)]),
            metadata=_metadata("evidence"),
            timeout=10,
        )
    assert hidden.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert fronted.counter(SIGN_DIGESTS, "OK") == 0
    del public
    channel.close()


def test_a_killed_front_is_replaced_and_sigterm_drains_everything(
    fronted: FrontedSigner,
) -> None:
    children = fronted.children()
    assert len(children) == 4  # journal, two workers, front
    victim = fronted.front_pid()
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = fronted.front_pid()
        if now is not None and now != victim:
            break
        time.sleep(0.2)
    assert fronted.front_pid() not in (None, victim)
    assert wait_serving(fronted.address, timeout=30)
    stub = signer_pb2_grpc.SignerServiceStub(grpc.insecure_channel(fronted.address))
    key_id, _ = _create_key(stub, "evidence")
    assert stub.SignDigest(_digest_request(key_id, 7), metadata=_metadata("evidence"), timeout=10)

    # A killed worker is replaced, and the front reconnects to it by itself.
    worker = next(p for p, cmd in fronted.children().items() if cmd.endswith(b"signet.signer\0"))
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replaced = worker not in fronted.children()
        if replaced and fronted.sample("signet_signer_front_workers_ready") == 2:
            break
        time.sleep(0.2)
    assert fronted.sample("signet_signer_front_workers_ready") == 2
    assert stub.SignDigest(_digest_request(key_id, 9), metadata=_metadata("evidence"), timeout=10)

    # While the journal is down, coalesced calls fail UNAVAILABLE as a whole; each still
    # counts as a failed SignDigest, so the SLA sees it.
    (journal,) = (p for p, cmd in fronted.children().items() if b"signer.journal" in cmd)
    os.kill(journal, signal.SIGKILL)
    codes: list[grpc.StatusCode] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            stub.SignDigest(_digest_request(key_id, 8), metadata=_metadata("evidence"), timeout=10)
            break
        except grpc.RpcError as err:
            codes.append(err.code())
            time.sleep(0.1)
    failed = len(codes)
    assert failed >= 1
    assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
    assert fronted.counter(SIGN_DIGEST, "UNAVAILABLE") == failed

    remaining = fronted.children()
    fronted.proc.send_signal(signal.SIGTERM)
    assert fronted.proc.wait(timeout=30) == 0
    for pid in remaining:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_mtls_callers_are_told_apart_by_their_verified_certificates(
    softhsm_token: TokenInfo, tmp_path: Path, front_binary: Path
) -> None:
    pki = write_test_pki(tmp_path, client_cn="evidence")
    auth = {
        "SIGNET_SIGNER_AUTH_MODE": "mtls",
        "SIGNET_SIGNER_TLS_CERT_FILE": str(pki.server_cert),
        "SIGNET_SIGNER_TLS_KEY_FILE": str(pki.server_key),
        "SIGNET_SIGNER_TLS_CLIENT_CA_FILE": str(pki.ca),
    }

    def channel(cert: tuple[bytes, bytes] | None) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.read_bytes(),
            private_key=cert[1] if cert else None,
            certificate_chain=cert[0] if cert else None,
        )
        return grpc.secure_channel(address, credentials)

    with _fronted_signer(softhsm_token, tmp_path, front_binary, auth) as running:
        address = running.address
        evidence_channel = channel((pki.client_cert, pki.client_key))
        health = health_pb2_grpc.HealthStub(evidence_channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            time.sleep(0.2)
        evidence = signer_pb2_grpc.SignerServiceStub(evidence_channel)
        key = evidence.CreateKey(
            signer_pb2.CreateKeyRequest(
                algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
                purpose=signer_pb2.KEY_PURPOSE_LOG_SIGNING,
                owner=signer_pb2.KeyOwner(system="evidence"),
            ),
            timeout=10,
        ).key
        assert evidence.SignDigest(_digest_request(key.key_id, 1), timeout=10).signature

        # Another service's certificate may not use evidence's key, however it dresses up:
        # the front replaces the peer header with the name it verified.
        ca_gateway = signer_pb2_grpc.SignerServiceStub(channel(pki.client("ca-gateway")))
        for metadata in ((), ((FRONT_PEER_HEADER, "evidence"),)):
            with pytest.raises(grpc.RpcError) as refused:
                ca_gateway.SignDigest(_digest_request(key.key_id, 2), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # No certificate, or one from another CA: no connection at all.
        for cert in (None, (pki.rogue_cert, pki.rogue_key)):
            stranger = signer_pb2_grpc.SignerServiceStub(channel(cert))
            with pytest.raises(grpc.RpcError) as unknown:
                stranger.SignDigest(_digest_request(key.key_id, 3), timeout=10)
            assert unknown.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_signer_killed_whole_comes_back_on_its_port(
    fronted: FrontedSigner, softhsm_token: TokenInfo, tmp_path: Path, front_binary: Path
) -> None:
    # Callers connected, then the supervisor and all its children SIGKILLed at once (as a
    # node or container dies): the front's side of those connections is left in TIME_WAIT.
    channel = grpc.insecure_channel(fronted.address)
    stub = signer_pb2_grpc.SignerServiceStub(channel)
    key_id, _ = _create_key(stub, "evidence")
    assert stub.SignDigest(_digest_request(key_id, 1), metadata=_metadata("evidence"), timeout=10)
    port = int(fronted.address.rsplit(":", 1)[1])
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    everyone = [fronted.proc.pid, *fronted.children()]
    for pid in everyone:
        os.kill(pid, signal.SIGKILL)
    fronted.proc.wait()
    # The dead front closed first; once this side closes too, its end is in TIME_WAIT.
    while idle.recv(4096):  # its HTTP/2 settings, then its FIN
        pass
    idle.close()
    assert _time_wait_on(port)

    # Same port, same database (the key is still there).
    with _fronted_signer(softhsm_token, tmp_path, front_binary, _TOKEN_AUTH, port) as restarted:
        assert wait_serving(restarted.address, timeout=60), (tmp_path / "signer.log").read_text()[
            -3000:
        ]
        assert stub.SignDigest(
            _digest_request(key_id, 2), metadata=_metadata("evidence"), timeout=10
        ).signature
    channel.close()


def test_the_port_opens_only_once_workers_listen(
    softhsm_token: TokenInfo, tmp_path: Path, front_binary: Path
) -> None:
    # A balancer that finds the port open sends calls there: they must not meet a front
    # with no worker behind it (UNAVAILABLE), as they did after a restart in make chaos.
    with _fronted_signer(softhsm_token, tmp_path, front_binary, _TOKEN_AUTH) as starting:
        port = int(starting.address.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "the signer's port never opened"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        with grpc.insecure_channel(starting.address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
