"""Evidence with its keys in the real SoftHSM token, through the real signer over gRPC.

The log key and the TSA key are system keys (owner ``evidence``) that the evidence service
creates in the signer at first start; tree heads and timestamp tokens are signed in the
HSM. The signer's own CAdES B-T path time-stamps against this TSA over HTTP, and a whole
signing (the signer's real SignatureCreated event included) is exported as a package that
``signet-verify`` checks in a separate process.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from sqlalchemy import select

from signet.common.events import EventEnvelope, decode_envelope, new_envelope, unpack_payload
from signet.common.outbox import OutboxMessage
from signet.common.pkcs11 import Pkcs11Pool
from signet.common.testing.grpc import InProcessServer
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.evidence import merkle
from signet.evidence.backends.signer import SignerKeyService
from signet.evidence.certs import verify_timestamp_token
from signet.evidence.domain import KeyPurpose
from signet.evidence.repository import LogRepository
from signet.evidence.treehead import verify_tree_head
from signet.evidence.v1 import evidence_pb2
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.evidence import EvidenceEnv, evidence_env, signing_flow, timestamp_request
from tests.fixtures.pki import Pki, blank_pdf, openssl_cms_verify, openssl_ts_verify
from tests.fixtures.signer import SignerHarness, signer_harness

pytestmark = pytest.mark.softhsm


@dataclass
class Env:
    """Evidence whose key service is the real signer on SoftHSM."""

    evidence: EvidenceEnv
    harness: SignerHarness
    server: InProcessServer
    as_evidence: signer_pb2_grpc.SignerServiceStub
    as_ca: signer_pb2_grpc.SignerServiceStub


@pytest.fixture(scope="module")
def env(
    pkcs11_pool: Pkcs11Pool, test_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    with signer_harness(pkcs11_pool, tmp_path_factory.mktemp("signer")) as harness:
        server = harness.serve()
        channel = server.new_channel(bearer_token=harness.tokens["evidence"])
        as_ca = harness.stub(server, "ca-gateway")

        def public_key_of(key_id: str) -> bytes:
            reply = as_ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=key_id))
            return bytes(reply.public_key.spki_der)

        with evidence_env(
            tmp_path_factory.mktemp("evidence"),
            SignerKeyService(channel),
            test_pki,
            public_key_of,
        ) as evidence:
            yield Env(evidence, harness, server, harness.stub(server, "evidence"), as_ca)


def test_the_log_key_is_an_evidence_system_key_in_the_hsm_and_signs_heads(env: Env) -> None:
    published = env.evidence.stub.GetLogPublicKey(evidence_pb2.GetLogPublicKeyRequest())
    key = env.as_evidence.GetKey(signer_pb2.GetKeyRequest(key_id=env.evidence.log.key.key_id)).key
    assert key.owner.system == "evidence"
    assert key.purpose == signer_pb2.KEY_PURPOSE_LOG_SIGNING
    spki = env.as_evidence.GetPublicKey(
        signer_pb2.GetPublicKeyRequest(key_id=key.key_id)
    ).public_key.spki_der
    assert spki == published.spki_der
    env.evidence.log.integrate(force_sign=True)
    verify_tree_head(env.evidence.log.tree_head(), spki)


def test_another_service_cannot_sign_with_the_log_key(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        env.as_ca.SignDigest(
            signer_pb2.SignDigestRequest(
                key_id=env.evidence.log.key.key_id,
                digest=common_pb2.Digest(
                    algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=b"\x01" * 32
                ),
            )
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_restarted_service_keeps_its_log_key(env: Env, tmp_path: Path) -> None:
    keys = SignerKeyService(env.server.new_channel(bearer_token=env.harness.tokens["evidence"]))
    again = keys.create_system_key(KeyPurpose.LOG_SIGNING, "evidence-log_signing-1")
    assert again.key_id == env.evidence.log.key.key_id


def test_proofs_over_many_sizes_verify_against_hsm_signed_heads(env: Env) -> None:
    stub = env.evidence.stub
    sizes = []
    for batch in (1, 2, 5, 13):
        for _ in range(batch):
            stub.Append(evidence_pb2.AppendRequest(event=signing_envelope()))
        env.evidence.log.integrate()
        sizes.append(env.evidence.log.tree_head().tree_size)
    spki = env.evidence.log.public_key().spki_der
    latest = env.evidence.log.tree_head()
    for size in sizes:
        head = env.evidence.log.tree_head(size)
        verify_tree_head(head, spki)
        for index in range(0, size, max(1, size // 5)):
            proof = env.evidence.log.inclusion_proof(leaf_index=index, tree_size=size)
            merkle.verify_inclusion(index, size, proof.leaf_hash, proof.hashes, head.root_hash)
        consistency = env.evidence.log.consistency_proof(size, latest.tree_size)
        merkle.verify_consistency(
            size, latest.tree_size, head.root_hash, latest.root_hash, list(consistency.hashes)
        )


def signing_envelope() -> EventEnvelope:
    return new_envelope(events_pb2.KeyCreated(key_id="k-x"), source="signer", subject="k-x")


def test_a_tsa_token_signed_in_the_hsm_passes_openssl_ts_verify(env: Env, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"hsm timestamp").digest()
    issued = env.evidence.tsa.timestamp(timestamp_request(digest))
    assert issued.granted
    openssl_ts_verify(tmp_path, issued.token_der, digest, env.evidence.pki.root_der)
    tsa_key = env.as_evidence.GetKey(
        signer_pb2.GetKeyRequest(key_id=env.evidence.tsa.key.key_id)
    ).key
    assert tsa_key.purpose == signer_pb2.KEY_PURPOSE_TIMESTAMPING
    assert tsa_key.owner.system == "evidence"


def test_the_signers_cades_b_t_path_time_stamps_with_this_tsa(env: Env, tmp_path: Path) -> None:
    signer = env.harness.serve(tsa_url=env.evidence.http.url + "/tsa")
    ca = env.harness.stub(signer, "ca-gateway")
    subscriber = _subscriber(env, ca)
    document = b"contract " + uuid.uuid4().hex.encode()
    digest = hashlib.sha256(document).digest()
    grant, _ = _grant(env, signer, subscriber, digest)
    reply = ca.SignDocument(
        signer_pb2.SignDocumentRequest(
            key_id=subscriber.key_id,
            grant=grant,
            format=signer_pb2.DOCUMENT_FORMAT_CMS_DETACHED,
            level=signer_pb2.SIGNATURE_LEVEL_B_T,
            certificate_chain_der=[
                env.evidence.ca.der(_serial(env, subscriber)),
                env.evidence.pki.root_der,
            ],
            document=document,
            transaction_id="tx-" + uuid.uuid4().hex,
        )
    )
    openssl_cms_verify(tmp_path, reply.signed_output, document, env.evidence.pki.root_der)
    root = x509.load_der_x509_certificate(env.evidence.pki.root_der)
    info = verify_timestamp_token(reply.timestamp_token, [], [root])
    signer_info = asn1_cms.ContentInfo.load(reply.signed_output)["content"]["signer_infos"][0]
    assert info.imprint == hashlib.sha256(signer_info["signature"].native).digest()
    assert info.tsa_certificate.subject.rfc4514_string() == "CN=Signet TSA"


def test_the_signers_pades_b_t_path_time_stamps_with_this_tsa(env: Env) -> None:
    signer = env.harness.serve(tsa_url=env.evidence.http.url + "/tsa")
    ca = env.harness.stub(signer, "ca-gateway")
    subscriber = _subscriber(env, ca)
    pdf = blank_pdf()
    grant, _ = _grant(env, signer, subscriber, hashlib.sha256(pdf).digest())
    reply = ca.SignDocument(
        signer_pb2.SignDocumentRequest(
            key_id=subscriber.key_id,
            grant=grant,
            format=signer_pb2.DOCUMENT_FORMAT_PADES,
            level=signer_pb2.SIGNATURE_LEVEL_B_T,
            certificate_chain_der=[
                env.evidence.ca.der(_serial(env, subscriber)),
                env.evidence.pki.root_der,
            ],
            document=pdf,
        )
    )
    status = env.evidence.pki.pdf_signature_status(reply.signed_output)
    assert status.bottom_line
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    token_sha = hashlib.sha256(reply.timestamp_token).digest()
    with env.evidence.db.session() as session:
        kept = LogRepository(session).timestamps_by_sha256([token_sha])
        assert [t.token_der for t in kept] == [reply.timestamp_token]


_SERIALS: dict[str, str] = {}


def _serial(env: Env, key: signer_pb2.Key) -> str:
    if key.key_id not in _SERIALS:
        _SERIALS[key.key_id] = env.evidence.ca.issue(key.key_id, timestamping=False)
    return _SERIALS[key.key_id]


def _subscriber(env: Env, ca: signer_pb2_grpc.SignerServiceStub) -> signer_pb2.Key:
    return ca.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            purpose=signer_pb2.KEY_PURPOSE_SUBSCRIBER_SIGNING,
            owner=signer_pb2.KeyOwner(
                subscriber=signer_pb2.SubscriberOwner(
                    tenant_id="t-ev", account_id="a-" + uuid.uuid4().hex[:8]
                )
            ),
        )
    ).key


def _grant(
    env: Env, server: InProcessServer, key: signer_pb2.Key, digest: bytes
) -> tuple[str, str]:
    now = datetime.now(UTC)
    return env.harness.grant(
        server,
        tenant=key.owner.subscriber.tenant_id,
        account=key.owner.subscriber.account_id,
        key_id=key.key_id,
        digests=[digest],
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
    )


def _signer_events(env: Env, transaction_id: str) -> list[EventEnvelope]:
    with env.harness.db.session() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        envelopes = [decode_envelope(r.envelope) for r in rows]
    return [e for e in envelopes if e.transaction_id == transaction_id]


def test_a_real_signing_exports_a_package_that_signet_verify_passes(
    env: Env, tmp_path: Path
) -> None:
    signer = env.harness.serve(tsa_url=env.evidence.http.url + "/tsa")
    ca = env.harness.stub(signer, "ca-gateway")
    subscriber = _subscriber(env, ca)
    serial = _serial(env, subscriber)
    document = b"contract " + uuid.uuid4().hex.encode()
    digest = hashlib.sha256(document).digest()
    grant, grant_id = _grant(env, signer, subscriber, digest)
    transaction = "tx-" + uuid.uuid4().hex
    ca.SignDocument(
        signer_pb2.SignDocumentRequest(
            key_id=subscriber.key_id,
            grant=grant,
            format=signer_pb2.DOCUMENT_FORMAT_CMS_DETACHED,
            level=signer_pb2.SIGNATURE_LEVEL_B_T,
            certificate_chain_der=[env.evidence.ca.der(serial), env.evidence.pki.root_der],
            document=document,
            transaction_id=transaction,
        )
    )
    # The identity and CA events of this signing, then the signer's own SignatureCreated.
    flow = signing_flow(env.evidence, subscriber.key_id)
    account = subscriber.owner.subscriber.account_id
    context = [e for e in flow.events if not e.type.endswith("SignatureCreated")]
    for envelope in context:
        _rebind(envelope, account, serial, grant_id, digest, transaction, env)
    signed = _signer_events(env, transaction)
    assert [e.type for e in signed] == ["signet.events.v1.SignatureCreated"]
    for envelope in [*context, *signed]:
        env.evidence.stub.Append(evidence_pb2.AppendRequest(event=envelope))
    package = env.evidence.stub.ExportEvidencePackage(
        evidence_pb2.ExportEvidencePackageRequest(transaction_id=transaction)
    )
    (tmp_path / "package.zip").write_bytes(package.package)
    (tmp_path / "log.pem").write_bytes(env.evidence.public_key_pem())
    (tmp_path / "root.pem").write_bytes(env.evidence.pki.root_pem)
    proc = _signet_verify(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT: PASS" in proc.stdout
    assert "signature" in proc.stdout and "timestamp" in proc.stdout
    # One flipped byte in an entry and the same command fails.
    archive = zipfile.ZipFile(io.BytesIO(package.package))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in archive.namelist():
            data = archive.read(name)
            if (
                name.startswith("entries/")
                and name == sorted(n for n in archive.namelist() if n.startswith("entries/"))[-1]
            ):
                data = data[:-3] + bytes([data[-3] ^ 0x40]) + data[-2:]
            target.writestr(name, data)
    (tmp_path / "package.zip").write_bytes(out.getvalue())
    proc = _signet_verify(tmp_path)
    assert proc.returncode == 1
    assert "RESULT: FAIL" in proc.stdout


def _rebind(
    envelope: EventEnvelope,
    account: str,
    serial: str,
    grant_id: str,
    digest: bytes,
    transaction: str,
    env: Env,
) -> None:
    """Point the flow's identity and CA events at the real signing's account, grant and cert."""
    envelope.actor.account_id = account
    if envelope.type.endswith("RealNameVerified"):
        verified = unpack_payload(envelope, events_pb2.RealNameVerified)
        verified.account_id = account
        envelope.payload.Pack(verified)
    elif envelope.type.endswith("CertificateIssued"):
        issued = unpack_payload(envelope, events_pb2.CertificateIssued)
        issued.serial = serial
        issued.account_id = account
        issued.sha256_fingerprint = hashlib.sha256(env.evidence.ca.der(serial)).digest()
        envelope.payload.Pack(issued)
    else:
        confirmed = unpack_payload(envelope, events_pb2.WillingnessConfirmed)
        confirmed.account_id = account
        confirmed.grant_id = grant_id
        del confirmed.digests[:]
        confirmed.digests.append(
            common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=digest)
        )
        envelope.payload.Pack(confirmed)
        envelope.transaction_id = transaction
    envelope.id = str(uuid.uuid4())


def _signet_verify(directory: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "signet-verify"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "signet.evidence.cli"]
    return subprocess.run(
        [
            *command,
            str(directory / "package.zip"),
            "--log-key",
            str(directory / "log.pem"),
            "--ca-cert",
            str(directory / "root.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )
