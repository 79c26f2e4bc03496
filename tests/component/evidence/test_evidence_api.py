"""EvidenceService over gRPC on SQLite, in-memory keys and the ca-gateway test double.

Covers the API's statuses and the log's promises; the same flows run on the real signer
and SoftHSM in tests/integration/evidence.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from asn1crypto import tsp
from cryptography import x509
from prometheus_client import REGISTRY

from signet.common.events import new_envelope
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.evidence import merkle
from signet.evidence.backends.memory import MemoryKeyService
from signet.evidence.backends.witness import ALERT_FILE, FileWitness, HttpWitness, WitnessError
from signet.evidence.certs import verify_timestamp_token
from signet.evidence.domain import ConsistencyProof, KeyPurpose
from signet.evidence.treehead import SignedTreeHead, signing_digest, verify_tree_head
from signet.evidence.v1 import evidence_pb2
from signet.evidence.verify import verify_package
from tests.fixtures.evidence import (
    EvidenceEnv,
    evidence_env,
    response_status,
    signing_flow,
    timestamp_request,
)
from tests.fixtures.pki import Pki


@pytest.fixture
def env(tmp_path: Path, test_pki: Pki) -> Iterator[EvidenceEnv]:
    keys = MemoryKeyService()
    with evidence_env(tmp_path, keys, test_pki, keys.public_key) as environment:
        yield environment


def _event(tx: str = "tx-1") -> evidence_pb2.AppendRequest:
    envelope = new_envelope(
        events_pb2.KeyCreated(key_id="k-1"), source="signer", subject="k-1", tenant="t-1"
    )
    envelope.transaction_id = tx
    return evidence_pb2.AppendRequest(event=envelope)


def _head(message: evidence_pb2.SignedTreeHead) -> SignedTreeHead:
    return SignedTreeHead(
        log_id=message.log_id,
        tree_size=message.tree_size,
        root_hash=message.root_hash,
        timestamp=message.timestamp.ToDatetime(tzinfo=UTC),
        signature=message.signature,
    )


def _spki(env: EvidenceEnv) -> bytes:
    return env.stub.GetLogPublicKey(evidence_pb2.GetLogPublicKeyRequest()).spki_der


def test_append_with_wait_returns_an_integrated_entry_with_a_verifying_proof(
    env: EvidenceEnv,
) -> None:
    response = env.stub.Append(
        evidence_pb2.AppendRequest(event=_event().event, wait_for_integration=True)
    )
    assert response.entry.HasField("leaf_index")
    assert not response.duplicate
    proof = env.stub.GetInclusionProof(
        evidence_pb2.GetInclusionProofRequest(event_id=response.entry.event_id)
    )
    head = _head(proof.tree_head)
    verify_tree_head(head, _spki(env))
    merkle.verify_inclusion(
        proof.leaf_index, proof.tree_size, proof.leaf_hash, list(proof.hashes), head.root_hash
    )


def test_appending_the_same_event_again_appends_nothing(env: EvidenceEnv) -> None:
    request = _event()
    first = env.stub.Append(request)
    again = env.stub.Append(request)
    assert again.duplicate
    assert again.entry.event_id == first.entry.event_id
    env.log.integrate()
    entries = env.stub.GetEntries(evidence_pb2.GetEntriesRequest(transaction_id="tx-1"))
    assert len(entries.entries) == 1


def test_consistency_proof_between_two_signed_heads_verifies(env: EvidenceEnv) -> None:
    for _ in range(5):
        env.stub.Append(_event())
    env.log.integrate()
    first = env.stub.GetSignedTreeHead(evidence_pb2.GetSignedTreeHeadRequest()).tree_head
    for _ in range(6):
        env.stub.Append(_event())
    env.log.integrate()
    proof = env.stub.GetConsistencyProof(
        evidence_pb2.GetConsistencyProofRequest(first_tree_size=first.tree_size)
    )
    merkle.verify_consistency(
        first.tree_size,
        proof.second_tree_size,
        first.root_hash,
        proof.tree_head.root_hash,
        list(proof.hashes),
    )


def test_entries_carry_actor_and_digests_and_leaf_bytes_on_request(env: EvidenceEnv) -> None:
    request = _event("tx-actor")
    request.event.actor.account_id = "acc-9"
    request.event.actor.client_ip = "198.51.100.4"
    request.event.digests.append(
        common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=b"\x07" * 32)
    )
    request.wait_for_integration = True
    env.stub.Append(request)
    found = env.stub.GetEntries(
        evidence_pb2.GetEntriesRequest(
            digest=common_pb2.Digest(
                algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=b"\x07" * 32
            ),
            include_leaf_data=True,
        )
    ).entries
    assert [e.actor.client_ip for e in found] == ["198.51.100.4"]
    assert merkle.leaf_hash(found[0].leaf_data) == found[0].leaf_hash


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (evidence_pb2.GetInclusionProofRequest(), grpc.StatusCode.INVALID_ARGUMENT, "leaf_index"),
        (
            evidence_pb2.GetInclusionProofRequest(event_id="nope"),
            grpc.StatusCode.NOT_FOUND,
            "no such entry",
        ),
        (
            evidence_pb2.GetInclusionProofRequest(leaf_hash=b"short"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "32 bytes",
        ),
    ],
)
def test_bad_proof_requests_get_clear_statuses(
    env: EvidenceEnv,
    request_: evidence_pb2.GetInclusionProofRequest,
    code: grpc.StatusCode,
    text: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        env.stub.GetInclusionProof(request_)
    assert caught.value.code() == code
    assert text in (caught.value.details() or "")


def test_append_without_an_event_is_invalid(env: EvidenceEnv) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        env.stub.Append(evidence_pb2.AppendRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_tree_size_ahead_of_the_log_is_not_found(env: EvidenceEnv) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        env.stub.GetSignedTreeHead(evidence_pb2.GetSignedTreeHeadRequest(tree_size=10_000))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# ---- time-stamping authority -------------------------------------------------------------


def test_timestamp_over_grpc_is_granted_and_verifies_with_the_ca_root(env: EvidenceEnv) -> None:
    digest = hashlib.sha256(b"document").digest()
    response = env.stub.Timestamp(
        evidence_pb2.TimestampRequest(request_der=timestamp_request(digest, nonce=42))
    )
    parsed = tsp.TimeStampResp.load(response.response_der)
    assert parsed["status"]["status"].native == "granted"
    token = parsed["time_stamp_token"].dump()
    info = verify_timestamp_token(token, [], [x509.load_der_x509_certificate(env.pki.root_der)])
    assert info.imprint == digest
    assert (
        parsed["time_stamp_token"]["content"]["encap_content_info"]["content"]
        .parsed["nonce"]
        .native
        == 42
    )


def test_timestamp_with_an_unsupported_hash_is_rejected_inside_the_response(
    env: EvidenceEnv,
) -> None:
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "md5"},
                "hashed_message": b"\x00" * 16,
            },
        }
    ).dump()
    response = env.stub.Timestamp(evidence_pb2.TimestampRequest(request_der=request))
    status, failures = response_status(response.response_der)
    assert status == "rejection"
    assert failures == {"bad_alg"}


def test_tsa_certificate_requests_are_idempotent_per_key(env: EvidenceEnv) -> None:
    env.tsa.start()
    env.tsa.start()
    assert env.ca.issue_calls == 3
    assert len({r for r in env.ca._requests}) == 1


def test_openssl_ts_query_over_http_verifies_with_the_ca_chain(
    env: EvidenceEnv, tmp_path: Path
) -> None:
    (tmp_path / "data.txt").write_bytes(b"contract text")
    subprocess.run(
        [
            "openssl",
            "ts",
            "-query",
            "-data",
            str(tmp_path / "data.txt"),
            "-sha256",
            "-cert",
            "-out",
            str(tmp_path / "req.tsq"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    request = urllib.request.Request(
        env.http.url + "/tsa",
        data=(tmp_path / "req.tsq").read_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.headers["Content-Type"] == "application/timestamp-reply"
        (tmp_path / "reply.tsr").write_bytes(reply.read())
    (tmp_path / "root.pem").write_bytes(env.pki.root_pem)
    proc = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            str(tmp_path / "reply.tsr"),
            "-queryfile",
            str(tmp_path / "req.tsq"),
            "-CAfile",
            str(tmp_path / "root.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Verification: OK" in proc.stdout, proc.stdout + proc.stderr
    # and a different document's query does not verify against that reply
    (tmp_path / "other.txt").write_bytes(b"another text")
    subprocess.run(
        [
            "openssl",
            "ts",
            "-query",
            "-data",
            str(tmp_path / "other.txt"),
            "-sha256",
            "-cert",
            "-out",
            str(tmp_path / "other.tsq"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    proc = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            str(tmp_path / "reply.tsr"),
            "-queryfile",
            str(tmp_path / "other.tsq"),
            "-CAfile",
            str(tmp_path / "root.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Verification: OK" not in proc.stdout


def test_http_serves_the_log_key_and_the_latest_head(env: EvidenceEnv) -> None:
    with urllib.request.urlopen(env.http.url + "/log/public-key", timeout=10) as reply:
        assert reply.read() == env.public_key_pem()
    with urllib.request.urlopen(env.http.url + "/log/tree-head", timeout=10) as reply:
        head = SignedTreeHead.from_json(json.loads(reply.read()))
    verify_tree_head(head, _spki(env))


# ---- evidence packages ---------------------------------------------------------------------


def _package(env: EvidenceEnv, *, revoked_before: bool = False) -> tuple[bytes, str]:
    keys = env.keys
    assert isinstance(keys, MemoryKeyService)
    subscriber = keys.create_system_key(KeyPurpose.LOG_SIGNING, "subscriber-" + str(id(env)))
    signed_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    flow = signing_flow(
        env,
        subscriber.key_id,
        signed_at=signed_at,
        revoked_at=signed_at - timedelta(minutes=5) if revoked_before else None,
    )
    for envelope in flow.events:
        env.stub.Append(evidence_pb2.AppendRequest(event=envelope))
    response = env.stub.ExportEvidencePackage(
        evidence_pb2.ExportEvidencePackageRequest(transaction_id=flow.transaction_id)
    )
    assert hashlib.sha256(response.package).digest() == response.package_sha256
    return response.package, flow.serial


def _verify(env: EvidenceEnv, package: bytes) -> tuple[bool, dict[str, str]]:
    passed, checks = verify_package(
        package, log_key_spki=_spki(env), ca_certificates=[env.pki.root_der]
    )
    return passed, {c.item: c.detail for c in checks if not c.passed}


def test_a_genuine_package_passes_every_check(env: EvidenceEnv) -> None:
    package, _ = _package(env)
    passed, failures = _verify(env, package)
    assert passed, failures
    names = zipfile.ZipFile(io.BytesIO(package)).namelist()
    assert {"manifest.json", "manifest.sig", "manifest.tst", "report.html"} <= set(names)


def test_a_package_by_document_digest_gathers_the_same_signing(env: EvidenceEnv) -> None:
    package, _ = _package(env)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(package)).read("manifest.json"))
    digest = manifest["signatures"][0]["digest"].split(":")[1]
    response = env.stub.ExportEvidencePackage(
        evidence_pb2.ExportEvidencePackageRequest(
            document_digest=common_pb2.Digest(
                algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=bytes.fromhex(digest)
            )
        )
    )
    assert response.entry_count == len(manifest["entries"])
    assert _verify(env, response.package)[0]


def _rewrite(package: bytes, change: dict[str, bytes | None]) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(package))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            if name in change:
                if change[name] is not None:
                    target.writestr(name, change[name])  # type: ignore[arg-type]
            else:
                target.writestr(name, source.read(name))
    return out.getvalue()


def test_a_changed_byte_in_the_signature_record_fails(env: EvidenceEnv) -> None:
    package, _ = _package(env)
    archive = zipfile.ZipFile(io.BytesIO(package))
    manifest = json.loads(archive.read("manifest.json"))
    entry = next(e for e in manifest["entries"] if e["event_type"].endswith("SignatureCreated"))
    data = bytearray(archive.read(entry["file"]))
    data[-5] ^= 0x01
    passed, failures = _verify(env, _rewrite(package, {entry["file"]: bytes(data)}))
    assert not passed
    assert "SHA-256 does not match" in failures[f"file {entry['file']}"]
    label = f"entry {entry['leaf_index']} (SignatureCreated)"
    assert "changed" in failures[label]


def test_a_removed_entry_fails(env: EvidenceEnv) -> None:
    package, _ = _package(env)
    archive = zipfile.ZipFile(io.BytesIO(package))
    manifest = json.loads(archive.read("manifest.json"))
    willingness = next(
        e for e in manifest["entries"] if e["event_type"].endswith("WillingnessConfirmed")
    )
    manifest["entries"].remove(willingness)
    del manifest["files"][willingness["file"]]
    forged = json.dumps(manifest, indent=2, sort_keys=True).encode()
    passed, failures = _verify(
        env, _rewrite(package, {"manifest.json": forged, willingness["file"]: None})
    )
    assert not passed
    assert "not signed by the log key" in failures["manifest signature"]
    assert any("willingness" in item for item in failures)


def test_a_forged_tree_head_fails(env: EvidenceEnv) -> None:
    package, _ = _package(env)
    archive = zipfile.ZipFile(io.BytesIO(package))
    manifest = json.loads(archive.read("manifest.json"))
    manifest["tree_head"]["tree_size"] += 1
    forged = json.dumps(manifest, indent=2, sort_keys=True).encode()
    passed, failures = _verify(env, _rewrite(package, {"manifest.json": forged}))
    assert not passed
    assert "not valid for the log key" in failures["tree head signature"]


def test_a_certificate_revoked_before_signing_fails(env: EvidenceEnv) -> None:
    package, serial = _package(env, revoked_before=True)
    passed, failures = _verify(env, package)
    assert not passed
    (reason,) = [v for k, v in failures.items() if k.endswith("certificate")]
    assert f"certificate {serial} was revoked" in reason
    assert "before the signature" in reason


def test_a_package_checked_against_another_log_key_fails(env: EvidenceEnv) -> None:
    package, _ = _package(env)
    other = MemoryKeyService().create_system_key(KeyPurpose.LOG_SIGNING, "other")
    passed, checks = verify_package(
        package, log_key_spki=other.spki_der, ca_certificates=[env.pki.root_der]
    )
    assert not passed
    assert {c.item for c in checks if not c.passed} >= {"log key", "tree head signature"}


def test_export_of_an_unknown_transaction_is_not_found(env: EvidenceEnv) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        env.stub.ExportEvidencePackage(
            evidence_pb2.ExportEvidencePackageRequest(transaction_id="tx-unknown")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_signet_verify_cli_prints_pass_and_fail_per_item(env: EvidenceEnv, tmp_path: Path) -> None:
    from signet.evidence.cli import main

    package, _ = _package(env)
    (tmp_path / "p.zip").write_bytes(package)
    (tmp_path / "log.pem").write_bytes(env.public_key_pem())
    (tmp_path / "root.pem").write_bytes(env.pki.root_pem)
    args = [
        str(tmp_path / "p.zip"),
        "--log-key",
        str(tmp_path / "log.pem"),
        "--ca-cert",
        str(tmp_path / "root.pem"),
    ]
    assert main(args) == 0
    assert main([str(tmp_path / "p.zip")]) == 1  # no trust anchors: trust checks fail


# ---- witnesses -----------------------------------------------------------------------------


def test_file_witness_keeps_heads_and_flags_a_rewritten_log(
    env: EvidenceEnv, tmp_path: Path
) -> None:
    witness = FileWitness(tmp_path / "witness")
    env.log.witnesses = [witness]
    for _ in range(3):
        env.stub.Append(_event())
    env.log.integrate()
    for _ in range(4):
        env.stub.Append(_event())
    env.log.integrate()
    assert env.log.flush_witnesses()
    kept = witness.latest(env.log.public_key().log_id)
    assert kept is not None and kept.tree_size == env.log.tree_head().tree_size
    # A rewritten log: a head of a larger size whose proof does not extend the kept head.
    forged_head = SignedTreeHead(
        log_id=kept.log_id,
        tree_size=kept.tree_size + 1,
        root_hash=hashlib.sha256(b"rewritten").digest(),
        timestamp=kept.timestamp,
        signature=b"",
    )
    with pytest.raises(WitnessError, match="signature"):
        witness.export(
            forged_head,
            env.public_key_pem().decode(),
            ConsistencyProof(kept.tree_size, (b"\x00" * 32,), forged_head),
        )
    # Even signed by the log key itself, the rewritten head is refused.
    signed = env.keys.sign_digest(
        env.log.key.key_id,
        signing_digest(forged_head.tree_size, forged_head.root_hash, forged_head.timestamp_ms),
    )
    forged_head = SignedTreeHead(
        forged_head.log_id,
        forged_head.tree_size,
        forged_head.root_hash,
        forged_head.timestamp,
        signed,
    )
    with pytest.raises(WitnessError, match="inconsistent"):
        witness.export(
            forged_head,
            env.public_key_pem().decode(),
            ConsistencyProof(kept.tree_size, (b"\x00" * 32,), forged_head),
        )
    assert (tmp_path / "witness" / kept.log_id.hex() / ALERT_FILE).exists()


def test_http_witness_receives_each_head_with_a_consistency_proof(env: EvidenceEnv) -> None:
    received: list[dict[str, object]] = []

    class Witness(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Witness)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        env.log.witnesses = [HttpWitness(f"http://127.0.0.1:{server.server_address[1]}/heads")]
        for _ in range(2):
            for _ in range(3):
                env.stub.Append(_event())
            env.log.integrate()
            assert env.log.flush_witnesses()
    finally:
        env.log.witnesses = []
        server.shutdown()
        server.server_close()
    spki = _spki(env)
    heads = [SignedTreeHead.from_json(r["tree_head"]) for r in received]  # type: ignore[arg-type]
    for head in heads:
        verify_tree_head(head, spki)
    last = received[-1]["consistency"]
    assert isinstance(last, dict)
    merkle.verify_consistency(
        last["first_tree_size"],
        heads[-1].tree_size,
        env.log.tree_head(last["first_tree_size"]).root_hash,
        heads[-1].root_hash,
        [base64.b64decode(h) for h in last["hashes"]],
    )


def test_http_witness_that_refuses_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        HttpWitness("ftp://witness.example")
    witness = HttpWitness("http://127.0.0.1:9/unreachable", timeout_seconds=1)
    head = SignedTreeHead(b"\x00" * 32, 0, merkle.EMPTY_ROOT, datetime.now(UTC), b"")
    with pytest.raises(WitnessError, match="unreachable"):
        witness.export(head, "", None)


def test_a_pdf_report_request_is_refused_with_the_reason(env: EvidenceEnv) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        env.stub.ExportEvidencePackage(
            evidence_pb2.ExportEvidencePackageRequest(
                transaction_id="tx-1", include_pdf_report=True
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "report.html" in (caught.value.details() or "")


def test_appends_and_duplicates_are_counted_in_metrics(env: EvidenceEnv) -> None:
    def sample(outcome: str) -> float:
        value = REGISTRY.get_sample_value("signet_evidence_appends_total", {"outcome": outcome})
        return value or 0.0

    appended, duplicates = sample("appended"), sample("duplicate")
    request = _event()
    env.stub.Append(request)
    env.stub.Append(request)
    assert sample("appended") == appended + 1
    assert sample("duplicate") == duplicates + 1


def test_a_stuck_witness_does_not_hold_up_integration(env: EvidenceEnv) -> None:
    release = threading.Event()
    offered: list[int] = []

    class StuckWitness:
        def export(
            self, head: SignedTreeHead, public_key_pem: str, consistency: ConsistencyProof | None
        ) -> None:
            offered.append(head.tree_size)
            release.wait()

    env.log.witnesses = [StuckWitness()]

    def integrate_three() -> None:
        for _ in range(3):
            env.stub.Append(_event())
            env.log.integrate()

    worker = threading.Thread(target=integrate_three)
    try:
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "integration waited for the witness"
    finally:
        release.set()
    assert env.log.flush_witnesses()
    env.log.witnesses = []
    # The witness got the first head, then (coalesced) the newest one.
    assert offered[0] >= 1
    assert offered[-1] == env.log.tree_head().tree_size
    assert len(offered) <= 3
