"""SignDocument over gRPC on the real SoftHSM token: CAdES checked by OpenSSL, PAdES by pyHanko.

Subscriber keys are made through the API; the session's test PKI certifies each key's SPKI
as the API returns it, the way the CA gateway would. Grants come from identity's grant key
in the same signer, and B-T timestamps from the local test TSA over HTTP.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from signet.common.db import Database
from signet.common.errors import Unavailable
from signet.common.events import decode_envelope, unpack_payload
from signet.common.outbox import OutboxMessage
from signet.common.pkcs11 import Pkcs11Pool
from signet.common.testing.grpc import InProcessServer
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.signer.cms import signing_time_of
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.pki import Pki, blank_pdf, openssl_cms_verify, verify_ed25519_cms
from tests.fixtures.signer import SignerHarness, signer_harness

pytestmark = pytest.mark.softhsm

SERVICES = ("identity", "ca-gateway")
SHA256 = common_pb2.HASH_ALGORITHM_SHA256
SHA384 = common_pb2.HASH_ALGORITHM_SHA384
SHA512 = common_pb2.HASH_ALGORITHM_SHA512
P256 = common_pb2.KEY_ALGORITHM_EC_P256
ED25519 = common_pb2.KEY_ALGORITHM_ED25519
CMS = signer_pb2.DOCUMENT_FORMAT_CMS_DETACHED
PADES = signer_pb2.DOCUMENT_FORMAT_PADES
B_B = signer_pb2.SIGNATURE_LEVEL_B_B
B_T = signer_pb2.SIGNATURE_LEVEL_B_T


@dataclass(frozen=True)
class Subscriber:
    """A subscriber key in the token and its certificate chain (leaf, root)."""

    key: signer_pb2.Key
    chain: tuple[bytes, bytes]

    @property
    def serial(self) -> str:
        return format(x509.load_der_x509_certificate(self.chain[0]).serial_number, "x")


@dataclass
class Env:
    """The signer served twice: with the test TSA configured, and without any TSA."""

    ca: signer_pb2_grpc.SignerServiceStub
    no_tsa: signer_pb2_grpc.SignerServiceStub
    tsa_down: signer_pb2_grpc.SignerServiceStub
    identity: signer_pb2_grpc.SignerServiceStub
    db: Database
    pki: Pki
    grant_kid: str
    harness: SignerHarness
    server: InProcessServer

    def subscriber(self, algorithm: int = P256) -> Subscriber:
        """A new subscriber key, certified over the SPKI the API reports for it."""
        key = self.ca.CreateKey(
            signer_pb2.CreateKeyRequest(
                algorithm=algorithm,  # type: ignore[arg-type]
                purpose=signer_pb2.KEY_PURPOSE_SUBSCRIBER_SIGNING,
                owner=signer_pb2.KeyOwner(
                    subscriber=signer_pb2.SubscriberOwner(
                        tenant_id="t-doc", account_id="a-" + uuid.uuid4().hex[:8]
                    )
                ),
            )
        ).key
        spki = self.ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=key.key_id))
        leaf = self.pki.issue(spki.public_key.spki_der, f"Subscriber {key.key_id}")
        return Subscriber(key, (leaf, self.pki.root_der))

    def grant(self, key: signer_pb2.Key, digests: list[bytes]) -> str:
        """A grant for ``digests``, signed by identity's HSM grant key through the signer."""
        now = datetime.now(UTC)
        token, _ = self.harness.grant(
            self.server,
            tenant=key.owner.subscriber.tenant_id,
            account=key.owner.subscriber.account_id,
            key_id=key.key_id,
            digests=digests,
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
        )
        return token

    def outbox(self) -> list[bytes]:
        with self.db.session() as session:
            return [r.envelope for r in session.scalars(select(OutboxMessage)).all()]


@pytest.fixture(scope="module")
def env(
    pkcs11_pool: Pkcs11Pool,
    test_pki: Pki,
    tsa_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    def unreachable(imprint: bytes, hash_name: str) -> Any:
        raise Unavailable("timestamp authority did not answer")

    with signer_harness(pkcs11_pool, tmp_path_factory.mktemp("signer")) as harness:
        with_tsa = harness.serve(tsa_url=tsa_url)
        without_tsa = harness.serve()
        tsa_down = harness.serve(tsa_url="http://tsa.invalid", timestamper=unreachable)
        yield Env(
            ca=harness.stub(with_tsa, "ca-gateway"),
            no_tsa=harness.stub(without_tsa, "ca-gateway"),
            tsa_down=harness.stub(tsa_down, "ca-gateway"),
            identity=harness.stub(with_tsa, "identity"),
            db=harness.db,
            pki=test_pki,
            grant_kid=harness.grant_kid,
            harness=harness,
            server=with_tsa,
        )


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    return err.code(), str(err.details())


def _document() -> bytes:
    return b"Signet contract " + uuid.uuid4().hex.encode() + b"\n" * 64


def _request(
    subscriber: Subscriber, grant: str, **fields: object
) -> signer_pb2.SignDocumentRequest:
    """A CMS request for ``subscriber`` with its chain; ``fields`` set or replace the rest."""
    request = signer_pb2.SignDocumentRequest(
        key_id=subscriber.key.key_id,
        grant=grant,
        format=CMS,
        certificate_chain_der=list(subscriber.chain),
        transaction_id="tx-doc",
    )
    for name, value in fields.items():
        if isinstance(value, common_pb2.Digest | signer_pb2.PadesOptions):
            getattr(request, name).CopyFrom(value)
        elif name == "certificate_chain_der":
            assert isinstance(value, list)
            del request.certificate_chain_der[:]
            request.certificate_chain_der.extend(value)
        else:
            setattr(request, name, value)
    return request


def _signature_value(cms_der: bytes) -> bytes:
    signer_info = asn1_cms.ContentInfo.load(cms_der)["content"]["signer_infos"][0]
    value: bytes = signer_info["signature"].native
    return value


def _imprint(token_der: bytes) -> tuple[str, bytes]:
    encap = asn1_cms.ContentInfo.load(token_der)["content"]["encap_content_info"]
    imprint = encap["content"].parsed["message_imprint"]
    return imprint["hash_algorithm"]["algorithm"].native, imprint["hashed_message"].native


def test_cms_detached_with_a_p256_subscriber_key_verifies_with_openssl(
    env: Env, tmp_path: Path
) -> None:
    subscriber = env.subscriber()
    document = _document()
    digest = hashlib.sha256(document).digest()

    reply = env.ca.SignDocument(
        _request(subscriber, env.grant(subscriber.key, [digest]), document=document)
    )

    output = openssl_cms_verify(tmp_path, reply.signed_output, document, env.pki.root_der)
    assert "Verification successful" in output
    assert reply.signature_id.startswith("sig-")
    assert reply.level == B_B
    assert reply.timestamp_token == b""
    assert reply.certificate_serial == subscriber.serial
    assert reply.document_digest == common_pb2.Digest(algorithm=SHA256, value=digest)
    signing_time = reply.signing_time.ToDatetime(tzinfo=UTC)
    assert signing_time_of(reply.signed_output) == signing_time
    assert abs(signing_time - datetime.now(UTC)) < timedelta(minutes=1)
    tampered = document.replace(b"Signet", b"Signal")
    with pytest.raises(AssertionError, match="content verify error"):
        openssl_cms_verify(tmp_path, reply.signed_output, tampered, env.pki.root_der)


def test_sign_document_grant_must_name_the_document_digest_and_is_used_once(env: Env) -> None:
    subscriber = env.subscriber()
    document = _document()
    digest = hashlib.sha256(document).digest()
    other = env.grant(subscriber.key, [hashlib.sha256(b"another document").digest()])

    code, details = _code(
        lambda: env.ca.SignDocument(_request(subscriber, other, document=document))
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED and "does not name this digest" in details
    grant = env.grant(subscriber.key, [digest])
    assert env.ca.SignDocument(_request(subscriber, grant, document=document)).signed_output
    code, details = _code(
        lambda: env.ca.SignDocument(_request(subscriber, grant, document=document))
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED and "already been used" in details


def test_cms_from_the_document_digest_alone_verifies_against_the_document(
    env: Env, tmp_path: Path
) -> None:
    subscriber = env.subscriber()
    document = _document()
    digest = hashlib.sha384(document).digest()

    reply = env.ca.SignDocument(
        _request(
            subscriber,
            env.grant(subscriber.key, [digest]),
            document_digest=common_pb2.Digest(algorithm=SHA384, value=digest),
        )
    )

    output = openssl_cms_verify(tmp_path, reply.signed_output, document, env.pki.root_der)
    assert "Verification successful" in output
    assert reply.document_digest == common_pb2.Digest(algorithm=SHA384, value=digest)
    signer_info = asn1_cms.ContentInfo.load(reply.signed_output)["content"]["signer_infos"][0]
    assert signer_info["digest_algorithm"]["algorithm"].native == "sha384"


def test_pades_signed_pdf_is_intact_valid_and_trusted_at_the_reported_time(env: Env) -> None:
    subscriber = env.subscriber()
    pdf = blank_pdf()

    reply = env.ca.SignDocument(
        _request(
            subscriber,
            env.grant(subscriber.key, [hashlib.sha256(pdf).digest()]),
            document=pdf,
            format=PADES,
            pades=signer_pb2.PadesOptions(field_name="Approval", reason="Agreed"),
        )
    )

    assert reply.signed_output.startswith(pdf)
    status = env.pki.pdf_signature_status(reply.signed_output)
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.signer_reported_dt == reply.signing_time.ToDatetime(tzinfo=UTC)
    assert reply.certificate_serial == subscriber.serial
    assert reply.timestamp_token == b""


def test_b_t_with_the_tsa_returns_the_embedded_timestamp_token(env: Env, tmp_path: Path) -> None:
    subscriber = env.subscriber()
    document = _document()
    digest = hashlib.sha256(document).digest()

    reply = env.ca.SignDocument(
        _request(subscriber, env.grant(subscriber.key, [digest]), document=document, level=B_T)
    )

    assert reply.level == B_T
    assert reply.timestamp_token
    signature = _signature_value(reply.signed_output)
    assert _imprint(reply.timestamp_token) == ("sha256", hashlib.sha256(signature).digest())
    output = openssl_cms_verify(tmp_path, reply.signed_output, document, env.pki.root_der)
    assert "Verification successful" in output


def test_pades_b_t_with_the_tsa_embeds_a_trusted_timestamp(env: Env) -> None:
    subscriber = env.subscriber()
    pdf = blank_pdf()

    reply = env.ca.SignDocument(
        _request(
            subscriber,
            env.grant(subscriber.key, [hashlib.sha256(pdf).digest()]),
            document=pdf,
            format=PADES,
            level=B_T,
        )
    )

    status = env.pki.pdf_signature_status(reply.signed_output)
    assert status.bottom_line
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    assert reply.level == B_T
    assert reply.timestamp_token
    assert _imprint(reply.timestamp_token)[0] == "sha256"


def test_b_t_without_a_tsa_is_failed_precondition(env: Env) -> None:
    subscriber = env.subscriber()
    document = _document()
    grant = env.grant(subscriber.key, [hashlib.sha256(document).digest()])

    code, details = _code(
        lambda: env.no_tsa.SignDocument(_request(subscriber, grant, document=document, level=B_T))
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "timestamp authority" in details
    # Nothing was signed: the same grant still works for B-B on that server.
    assert env.no_tsa.SignDocument(_request(subscriber, grant, document=document)).signed_output


def test_bad_document_requests_are_refused_before_signing(env: Env) -> None:
    subscriber = env.subscriber()
    pdf = blank_pdf()
    digest = hashlib.sha256(pdf).digest()
    grant = env.grant(subscriber.key, [digest])
    another = env.subscriber()

    def sign(**fields: object) -> signer_pb2.SignDocumentResponse:
        return env.ca.SignDocument(_request(subscriber, grant, **fields))

    cases: list[tuple[dict[str, object], grpc.StatusCode, str]] = [
        (
            {
                "format": PADES,
                "document_digest": common_pb2.Digest(algorithm=SHA256, value=digest),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "send `document`",
        ),
        (
            {"document": pdf, "certificate_chain_der": []},
            grpc.StatusCode.INVALID_ARGUMENT,
            "certificate_chain_der is required",
        ),
        (
            {"document": pdf, "certificate_chain_der": list(another.chain)},
            grpc.StatusCode.FAILED_PRECONDITION,
            "certificate does not match the signing key",
        ),
        (
            {"document": pdf, "certificate_chain_der": [b"not a certificate"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "certificate is not valid DER",
        ),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "send the document or its document_digest"),
        (
            {"document": pdf, "format": signer_pb2.DOCUMENT_FORMAT_UNSPECIFIED},
            grpc.StatusCode.INVALID_ARGUMENT,
            "format must be",
        ),
        ({"document": pdf, "level": 7}, grpc.StatusCode.INVALID_ARGUMENT, "level must be"),
        (
            {
                "document_digest": common_pb2.Digest(algorithm=SHA256, value=digest),
                "hash_algorithm": SHA384,
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "hash_algorithm differs",
        ),
    ]
    for fields, expected, needle in cases:
        code, details = _code(lambda fields=fields: sign(**fields))  # type: ignore[misc]
        assert (code, needle in details) == (expected, True), (fields.keys(), details)
    # None of them consumed the grant.
    assert sign(document=pdf).signed_output


def test_signature_created_event_names_the_document_and_never_carries_it(env: Env) -> None:
    subscriber = env.subscriber()
    document = b"TOP-SECRET-CONTRACT-" + uuid.uuid4().hex.encode()
    digest = hashlib.sha256(document).digest()

    reply = env.ca.SignDocument(
        _request(subscriber, env.grant(subscriber.key, [digest]), document=document, level=B_T)
    )

    envelopes = [decode_envelope(raw) for raw in env.outbox()]
    name = events_pb2.SignatureCreated.DESCRIPTOR.full_name
    ours = [e for e in envelopes if e.type == name and e.subject == subscriber.key.key_id]
    (envelope,) = ours
    event = unpack_payload(envelope, events_pb2.SignatureCreated)
    assert event.signature_id == reply.signature_id
    assert event.document_format == CMS
    assert event.level == B_T
    assert event.certificate_serial == subscriber.serial
    assert event.digest == common_pb2.Digest(algorithm=SHA256, value=digest)
    assert list(envelope.digests) == [common_pb2.Digest(algorithm=SHA256, value=digest)]
    assert envelope.transaction_id == "tx-doc"
    # Recorded after the document was whole: hashes of the delivered CMS and its token.
    assert event.signature_sha256 == hashlib.sha256(reply.signed_output).digest()
    assert reply.timestamp_token
    assert event.timestamp_token_sha256 == hashlib.sha256(reply.timestamp_token).digest()
    blobs = b"".join(env.outbox())
    assert document not in blobs
    assert reply.signed_output not in blobs


def test_ed25519_cms_signs_with_sha512(env: Env) -> None:
    subscriber = env.subscriber(ED25519)
    document = _document()
    digest = hashlib.sha512(document).digest()
    grant = env.grant(subscriber.key, [digest])

    reply = env.ca.SignDocument(_request(subscriber, grant, document=document))

    assert reply.document_digest == common_pb2.Digest(algorithm=SHA512, value=digest)
    verify_ed25519_cms(reply.signed_output, subscriber.chain[0], digest)
    from_digest = env.ca.SignDocument(
        _request(
            subscriber,
            env.grant(subscriber.key, [digest]),
            document_digest=common_pb2.Digest(algorithm=SHA512, value=digest),
        )
    )
    verify_ed25519_cms(from_digest.signed_output, subscriber.chain[0], digest)


def test_ed25519_with_another_hash_is_invalid_argument(env: Env) -> None:
    subscriber = env.subscriber(ED25519)
    document = _document()
    sha256 = hashlib.sha256(document).digest()
    grant = env.grant(subscriber.key, [sha256])

    for fields in (
        {"document_digest": common_pb2.Digest(algorithm=SHA256, value=sha256)},
        {"document": document, "hash_algorithm": SHA256},
    ):
        code, details = _code(
            lambda fields=fields: env.ca.SignDocument(_request(subscriber, grant, **fields))  # type: ignore[misc]
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "Ed25519" in details and "SHA512" in details and "RFC 8419" in details


def test_ed25519_certificate_must_hold_the_hsm_key(env: Env) -> None:
    subscriber = env.subscriber(ED25519)
    document = _document()
    grant = env.grant(subscriber.key, [hashlib.sha512(document).digest()])
    software = ec.generate_private_key(ec.SECP256R1()).public_key()
    foreign = env.pki.issue(
        software.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), "Impostor"
    )

    code, details = _code(
        lambda: env.ca.SignDocument(
            _request(
                subscriber,
                grant,
                document=document,
                certificate_chain_der=[foreign, env.pki.root_der],
            )
        )
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "certificate does not match the signing key" in details


def test_timestamp_failure_records_nothing_and_leaves_the_grant_usable(env: Env) -> None:
    subscriber = env.subscriber()
    document = _document()
    grant = env.grant(subscriber.key, [hashlib.sha256(document).digest()])
    request = _request(subscriber, grant, document=document, level=B_T)

    with pytest.raises(grpc.RpcError) as info:
        env.tsa_down.SignDocument(request)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE

    name = events_pb2.SignatureCreated.DESCRIPTOR.full_name
    recorded = [
        e
        for e in (decode_envelope(raw) for raw in env.outbox())
        if e.type == name and e.subject == subscriber.key.key_id
    ]
    assert recorded == []
    # The grant was not consumed: with the timestamp authority back, it signs once.
    reply = env.ca.SignDocument(request)
    assert reply.timestamp_token
    with pytest.raises(grpc.RpcError) as again:
        env.ca.SignDocument(request)
    assert again.value.code() is grpc.StatusCode.PERMISSION_DENIED
