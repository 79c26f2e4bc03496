"""The evidence service as operators run it: ``python -m signet.evidence`` beside a signer.

Real processes (a signer on the SoftHSM token with token auth, the evidence service) and
the ca-gateway test double in this process. Covers the composition root: the log key is
made in the signer at first start and kept across a restart, the TSA gets its certificate
in the background and answers over HTTP, appends are integrated and proven, and SIGTERM
drains with exit code 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import grpc
import pytest
from asn1crypto import tsp
from cryptography import x509

from signet.ca_gateway.v1 import ca_gateway_pb2_grpc
from signet.common.auth import hash_token
from signet.common.events import new_envelope
from signet.common.local.kafka import free_port
from signet.common.local.platform import wait_serving
from signet.common.local.softhsm import TokenInfo
from signet.common.testing.grpc import InProcessServer, settings_for_tests
from signet.events.v1 import events_pb2
from signet.evidence import merkle
from signet.evidence.certs import verify_timestamp_token
from signet.evidence.treehead import SignedTreeHead, verify_tree_head
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.evidence import CaGatewayTestDouble, response_status, timestamp_request
from tests.fixtures.pki import Pki

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]

TOKEN = "evidence-process-token"


@pytest.fixture
def signer_address(softhsm_token: TokenInfo, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.update(softhsm_token.env)
    env.update(
        {
            "SIGNET_SIGNER_GRPC_PORT": str(port),
            "SIGNET_SIGNER_METRICS_PORT": str(free_port()),
            "SIGNET_SIGNER_DATABASE_URL": f"sqlite:///{tmp_path / 'signer.db'}",
            "SIGNET_SIGNER_PKCS11_MODULE": str(softhsm_token.module_path),
            "SIGNET_SIGNER_PKCS11_TOKEN_LABEL": softhsm_token.label,
            "SIGNET_SIGNER_PKCS11_PIN": softhsm_token.pin,
            "SIGNET_SIGNER_AUTH_MODE": "token",
            "SIGNET_SIGNER_API_TOKEN_HASHES": f"evidence:{hash_token(TOKEN)}",
            "SIGNET_SIGNER_WORKERS": "1",
            "SIGNET_SIGNER_DRAIN_SECONDS": "1",
        }
    )
    with (tmp_path / "signer.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signet.signer"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            address = f"127.0.0.1:{port}"
            assert wait_serving(address, timeout=60), (tmp_path / "signer.log").read_text()
            yield address
        finally:
            proc.terminate()
            proc.wait(timeout=60)


@pytest.fixture
def ca_double(signer_address: str, test_pki: Pki) -> Iterator[str]:
    channel = grpc.insecure_channel(signer_address)
    signer = signer_pb2_grpc.SignerServiceStub(channel)

    def public_key_of(key_id: str) -> bytes:
        reply = signer.GetPublicKey(
            signer_pb2.GetPublicKeyRequest(key_id=key_id),
            metadata=(("authorization", f"Bearer {TOKEN}"),),
        )
        return bytes(reply.public_key.spki_der)

    double = CaGatewayTestDouble(test_pki, public_key_of)
    server = InProcessServer(
        lambda s: ca_gateway_pb2_grpc.add_CaGatewayServiceServicer_to_server(double, s),
        service_names=["signet.ca_gateway.v1.CaGatewayService"],
        settings=settings_for_tests(service_name="ca-gateway-double"),
    )
    with server:
        yield server.address
    channel.close()


@contextmanager
def evidence_process(
    tmp_path: Path, signer: str, ca: str, http_port: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "SIGNET_EVIDENCE_GRPC_PORT": str(port),
            "SIGNET_EVIDENCE_METRICS_PORT": str(free_port()),
            "SIGNET_EVIDENCE_DATABASE_URL": f"sqlite:///{tmp_path / 'evidence.db'}",
            "SIGNET_EVIDENCE_SIGNER_TARGETS": signer,
            "SIGNET_EVIDENCE_CA_GATEWAY_TARGETS": ca,
            "SIGNET_EVIDENCE_SERVICE_TOKEN": TOKEN,
            "SIGNET_EVIDENCE_HTTP_PORT": str(http_port),
            "SIGNET_EVIDENCE_KAFKA_BOOTSTRAP": "",
            "SIGNET_EVIDENCE_DRAIN_SECONDS": "1",
        }
    )
    log = (tmp_path / "evidence.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signet.evidence"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{port}"
    try:
        assert wait_serving(address, timeout=90), (tmp_path / "evidence.log").read_text()
        yield address, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        log.close()


def _post_tsa(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/timestamp-query"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return bytes(reply.read())


def _log_key(stub: evidence_pb2_grpc.EvidenceServiceStub) -> evidence_pb2.GetLogPublicKeyResponse:
    """The log key, once the sequencer has obtained it from the signer (it serves before)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return stub.GetLogPublicKey(evidence_pb2.GetLogPublicKeyRequest())
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_the_evidence_process_serves_keeps_its_key_and_drains(
    signer_address: str, ca_double: str, tmp_path: Path, test_pki: Pki
) -> None:
    http_port = free_port()
    with evidence_process(tmp_path, signer_address, ca_double, http_port) as (address, proc):
        channel = grpc.insecure_channel(address)
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        key = _log_key(stub)
        event = new_envelope(events_pb2.KeyCreated(key_id="k-p"), source="signer", subject="k-p")
        appended = stub.Append(evidence_pb2.AppendRequest(event=event, wait_for_integration=True))
        proof = stub.GetInclusionProof(
            evidence_pb2.GetInclusionProofRequest(leaf_index=appended.entry.leaf_index)
        )
        head = proof.tree_head
        verify_tree_head(
            SignedTreeHead(
                head.log_id,
                head.tree_size,
                head.root_hash,
                head.timestamp.ToDatetime(tzinfo=UTC),
                head.signature,
            ),
            key.spki_der,
        )
        merkle.verify_inclusion(
            proof.leaf_index, proof.tree_size, proof.leaf_hash, list(proof.hashes), head.root_hash
        )
        # The TSA becomes ready in the background and answers standard HTTP queries.
        digest = bytes(32)
        deadline = time.monotonic() + 60
        token = b""
        while time.monotonic() < deadline:
            reply = _post_tsa(f"http://127.0.0.1:{http_port}/tsa", timestamp_request(digest))
            if response_status(reply)[0] == "granted":
                token = tsp.TimeStampResp.load(reply)["time_stamp_token"].dump()
                break
            time.sleep(0.5)
        assert token, "the TSA never became ready"
        root = x509.load_der_x509_certificate(test_pki.root_der)
        assert verify_timestamp_token(token, [], [root]).imprint == digest
        channel.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    with evidence_process(tmp_path, signer_address, ca_double, free_port()) as (address, _):
        channel = grpc.insecure_channel(address)
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        again = _log_key(stub)
        assert again.spki_der == key.spki_der
        size = stub.GetSignedTreeHead(evidence_pb2.GetSignedTreeHeadRequest()).tree_head.tree_size
        assert size >= 1
        channel.close()
