"""Document signing with keys inside SoftHSM: CAdES checked by OpenSSL, PAdES by pyHanko.

The session's test PKI issues end-entity certificates over public keys generated in the
token, so every signature here is made by the HSM through the digest callback, as the
signer service does it. B-T timestamps come from the local test TSA over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signet.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.common.pkcs11 import Pkcs11KeyBackend, Pkcs11Pool
from signet.signer.cms import signing_time_of
from signet.signer.documents import (
    DigestSigner,
    TimestampFn,
    certificate_serial,
    document_digest,
    http_timestamper,
    pdf_timestamp_token_of,
    sign_cms_detached,
    sign_pdf,
    timestamp_token_of,
)
from tests.fixtures.pki import (
    Pki,
    blank_pdf,
    openssl_cms_verify,
    openssl_ts_verify,
    serve_http,
    tsa_responder,
    verify_ed25519_cms,
)

DER = serialization.Encoding.DER
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SIGNING_TIME = NOW - dt.timedelta(minutes=5)
DOCUMENT = b"Signet test contract\n" * 200


@dataclass(frozen=True)
class HsmKey:
    """A key in the token with its certificate chain (leaf first, then the root)."""

    backend: Pkcs11KeyBackend
    key_id: str
    algorithm: KeyAlgorithm
    public_key_der: bytes
    chain_der: tuple[bytes, ...]

    def signer(self, scheme: SignatureScheme, calls: list[HashAlgorithm | None]) -> DigestSigner:
        def sign(hash_alg: HashAlgorithm | None, data: bytes) -> bytes:
            calls.append(hash_alg)
            return self.backend.sign(self.key_id, scheme, hash_alg, data)

        return sign


@pytest.fixture(scope="module")
def hsm_keys(pkcs11_pool: Pkcs11Pool, test_pki: Pki) -> Iterator[dict[KeyAlgorithm, HsmKey]]:
    backend = Pkcs11KeyBackend(pkcs11_pool)
    keys: dict[KeyAlgorithm, HsmKey] = {}
    for algorithm in (
        KeyAlgorithm.EC_P256,
        KeyAlgorithm.EC_P384,
        KeyAlgorithm.RSA_2048,
        KeyAlgorithm.ED25519,
    ):
        key_id = f"doc-{algorithm.lower()}-{uuid.uuid4().hex[:8]}"
        spki = backend.generate(key_id, algorithm)
        leaf = test_pki.issue(spki, f"Signer {algorithm}")
        keys[algorithm] = HsmKey(backend, key_id, algorithm, spki, (leaf, test_pki.root_der))
    yield keys
    for key in keys.values():
        backend.destroy(key.key_id)


def _sign_cms(
    key: HsmKey,
    scheme: SignatureScheme,
    hash_alg: HashAlgorithm,
    calls: list[HashAlgorithm | None],
    timestamp: TimestampFn | None = None,
) -> bytes:
    return sign_cms_detached(
        content_digest=document_digest(DOCUMENT, hash_alg),
        hash_alg=hash_alg,
        key_algorithm=key.algorithm,
        scheme=scheme,
        certificate_chain_der=key.chain_der,
        public_key_der=key.public_key_der,
        sign=key.signer(scheme, calls),
        signing_time=SIGNING_TIME,
        timestamp=timestamp,
    )


CMS_CASES = [
    pytest.param(KeyAlgorithm.EC_P256, SignatureScheme.ECDSA, HashAlgorithm.SHA256, id="p256"),
    pytest.param(KeyAlgorithm.EC_P384, SignatureScheme.ECDSA, HashAlgorithm.SHA384, id="p384"),
    pytest.param(
        KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PSS, HashAlgorithm.SHA256, id="rsa-pss"
    ),
    pytest.param(
        KeyAlgorithm.RSA_2048,
        SignatureScheme.RSA_PKCS1V15,
        HashAlgorithm.SHA512,
        id="rsa-pkcs1v15",
    ),
]


@pytest.mark.softhsm
@pytest.mark.parametrize(("algorithm", "scheme", "hash_alg"), CMS_CASES)
def test_cms_detached_signature_from_hsm_key_verifies_with_openssl(
    hsm_keys: dict[KeyAlgorithm, HsmKey],
    test_pki: Pki,
    tmp_path: Path,
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    hash_alg: HashAlgorithm,
) -> None:
    calls: list[HashAlgorithm | None] = []
    signature = _sign_cms(hsm_keys[algorithm], scheme, hash_alg, calls)

    output = openssl_cms_verify(tmp_path, signature, DOCUMENT, test_pki.root_der)
    assert "Verification successful" in output
    # One HSM call, given a digest of the signed attributes, never the document.
    assert calls == [hash_alg]
    assert signing_time_of(signature) == SIGNING_TIME
    signed_data = asn1_cms.ContentInfo.load(signature)["content"]
    assert signed_data["encap_content_info"]["content"].native is None
    assert len(signed_data["certificates"]) == 2


@pytest.mark.softhsm
def test_cms_signature_over_tampered_document_fails_openssl_verification(
    hsm_keys: dict[KeyAlgorithm, HsmKey], test_pki: Pki, tmp_path: Path
) -> None:
    signature = _sign_cms(
        hsm_keys[KeyAlgorithm.EC_P256], SignatureScheme.ECDSA, HashAlgorithm.SHA256, []
    )
    tampered = bytearray(DOCUMENT)
    tampered[100] ^= 0x01

    with pytest.raises(AssertionError, match="content verify error"):
        openssl_cms_verify(tmp_path, signature, bytes(tampered), test_pki.root_der)


@pytest.mark.softhsm
def test_cms_ed25519_signature_covers_signed_attributes_and_document_digest(
    hsm_keys: dict[KeyAlgorithm, HsmKey],
) -> None:
    key = hsm_keys[KeyAlgorithm.ED25519]
    calls: list[HashAlgorithm | None] = []
    signature = _sign_cms(key, SignatureScheme.ED25519, HashAlgorithm.SHA512, calls)

    # OpenSSL 3.0 cannot verify Ed25519 in CMS, so the two links are checked by hand.
    assert calls == [None]
    verify_ed25519_cms(signature, key.chain_der[0], hashlib.sha512(DOCUMENT).digest())
    tampered = bytearray(signature)
    signer_info = asn1_cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    value = signer_info["signature"].native
    tampered[signature.index(value)] ^= 0x01
    with pytest.raises(InvalidSignature):
        verify_ed25519_cms(bytes(tampered), key.chain_der[0], hashlib.sha512(DOCUMENT).digest())


def _sign_pdf(
    key: HsmKey,
    scheme: SignatureScheme,
    *,
    pdf: bytes | None = None,
    hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
    field_name: str = "Signature1",
    timestamp: TimestampFn | None = None,
    calls: list[HashAlgorithm | None] | None = None,
) -> bytes:
    return sign_pdf(
        pdf=blank_pdf() if pdf is None else pdf,
        hash_alg=hash_alg,
        key_algorithm=key.algorithm,
        scheme=scheme,
        certificate_chain_der=key.chain_der,
        public_key_der=key.public_key_der,
        sign=key.signer(scheme, [] if calls is None else calls),
        signing_time=SIGNING_TIME,
        field_name=field_name,
        reason="Agreed to the contract",
        location="Berlin",
        timestamp=timestamp,
    )


@pytest.mark.softhsm
@pytest.mark.parametrize(
    ("algorithm", "scheme", "hash_alg", "mechanism"),
    [
        pytest.param(
            KeyAlgorithm.EC_P256, SignatureScheme.ECDSA, HashAlgorithm.SHA256, "ecdsa", id="p256"
        ),
        pytest.param(
            KeyAlgorithm.RSA_2048,
            SignatureScheme.RSA_PSS,
            HashAlgorithm.SHA256,
            "rsassa_pss",
            id="rsa-pss",
        ),
        pytest.param(
            KeyAlgorithm.ED25519,
            SignatureScheme.ED25519,
            HashAlgorithm.SHA512,
            "ed25519",
            id="ed25519",
        ),
    ],
)
def test_pades_signature_from_hsm_key_is_intact_valid_and_trusted(
    hsm_keys: dict[KeyAlgorithm, HsmKey],
    test_pki: Pki,
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    hash_alg: HashAlgorithm,
    mechanism: str,
) -> None:
    original = blank_pdf()
    calls: list[HashAlgorithm | None] = []
    signed = _sign_pdf(hsm_keys[algorithm], scheme, pdf=original, hash_alg=hash_alg, calls=calls)

    status = test_pki.pdf_signature_status(signed)
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.bottom_line
    assert status.coverage is not None
    assert status.coverage.name == "ENTIRE_FILE"
    assert status.md_algorithm == hash_alg.lower()
    assert status.pkcs7_signature_mechanism.endswith(mechanism)
    # PAdES carries the claimed time in /M; it is the caller's, not the local clock.
    assert status.signer_reported_dt == SIGNING_TIME
    # One HSM call: a digest, or for Ed25519 the signed attributes (no hash named).
    assert calls == [None if scheme is SignatureScheme.ED25519 else hash_alg]
    # An incremental update: the original bytes are kept as they were.
    assert signed.startswith(original)
    embedded = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    assert embedded.field_name == "Signature1"
    assert embedded.sig_object["/Reason"] == "Agreed to the contract"
    assert embedded.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"


@pytest.mark.softhsm
def test_pades_signature_over_modified_byte_is_not_intact(
    hsm_keys: dict[KeyAlgorithm, HsmKey], test_pki: Pki
) -> None:
    signed = _sign_pdf(hsm_keys[KeyAlgorithm.EC_P256], SignatureScheme.ECDSA)
    assert signed.count(b"Hello Signet") == 1
    modified = signed.replace(b"Hello Signet", b"Jello Signet")

    assert test_pki.pdf_signature_status(signed).intact
    status = test_pki.pdf_signature_status(modified)
    assert not status.intact
    # The signature over the signed attributes still holds; the document digest does not.
    assert not status.bottom_line


@pytest.mark.softhsm
def test_pades_with_timestamper_embeds_trusted_signature_timestamp(
    hsm_keys: dict[KeyAlgorithm, HsmKey], test_pki: Pki, tsa_url: str
) -> None:
    signed = _sign_pdf(
        hsm_keys[KeyAlgorithm.EC_P256],
        SignatureScheme.ECDSA,
        timestamp=http_timestamper(tsa_url),
    )

    status = test_pki.pdf_signature_status(signed)
    assert status.intact
    assert status.valid
    assert status.trusted
    timestamp = status.timestamp_validity
    assert timestamp is not None
    assert timestamp.intact
    assert timestamp.valid
    assert timestamp.trusted
    assert abs(timestamp.timestamp - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    token = pdf_timestamp_token_of(signed, "Signature1")
    embedded = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    signature_value = embedded.signer_info["signature"].native
    assert _imprint(token) == ("sha256", hashlib.sha256(signature_value).digest())
    assert (
        pdf_timestamp_token_of(
            _sign_pdf(hsm_keys[KeyAlgorithm.EC_P256], SignatureScheme.ECDSA), "Signature1"
        )
        == b""
    )
    with pytest.raises(InvalidArgument, match="no signature in that field"):
        pdf_timestamp_token_of(signed, "Signature2")


@pytest.mark.softhsm
@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"this is not a PDF at all", id="garbage"),
        pytest.param(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", id="no-xref"),
        pytest.param(None, id="truncated"),
    ],
)
def test_sign_pdf_with_unreadable_document_is_invalid_argument(
    hsm_keys: dict[KeyAlgorithm, HsmKey], document: bytes | None
) -> None:
    pdf = blank_pdf()[:-200] if document is None else document
    calls: list[HashAlgorithm | None] = []

    with pytest.raises(InvalidArgument) as failure:
        _sign_pdf(hsm_keys[KeyAlgorithm.EC_P256], SignatureScheme.ECDSA, pdf=pdf, calls=calls)
    assert failure.value.message == "document is not a readable PDF"
    assert calls == []


@pytest.mark.softhsm
def test_second_signature_goes_into_a_new_field_and_a_signed_field_is_failed_precondition(
    hsm_keys: dict[KeyAlgorithm, HsmKey], test_pki: Pki
) -> None:
    key = hsm_keys[KeyAlgorithm.EC_P256]
    once = _sign_pdf(key, SignatureScheme.ECDSA)
    twice = _sign_pdf(key, SignatureScheme.ECDSA, pdf=once, field_name="Signature2")

    root = asn1_x509.Certificate.load(test_pki.root_der)
    embedded = PdfFileReader(io.BytesIO(twice)).embedded_signatures
    assert [sig.field_name for sig in embedded] == ["Signature1", "Signature2"]
    for sig in embedded:
        assert validate_pdf_signature(sig, ValidationContext(trust_roots=[root])).bottom_line
    with pytest.raises(FailedPrecondition, match="the document does not allow this signature"):
        _sign_pdf(key, SignatureScheme.ECDSA, pdf=once)


# Error cases below never reach a key: software keys stand in for the HSM's public keys.


def _software_key_and_chain(pki: Pki) -> tuple[bytes, tuple[bytes, ...]]:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return spki, (pki.issue(spki, "Software signer"), pki.root_der)


def _never_sign(hash_alg: HashAlgorithm | None, data: bytes) -> bytes:
    raise AssertionError("must not sign")


def _cms_args(spki: bytes, chain: tuple[bytes, ...]) -> dict[str, object]:
    return {
        "content_digest": hashlib.sha256(DOCUMENT).digest(),
        "hash_alg": HashAlgorithm.SHA256,
        "key_algorithm": KeyAlgorithm.EC_P256,
        "scheme": SignatureScheme.ECDSA,
        "certificate_chain_der": chain,
        "public_key_der": spki,
        "sign": _never_sign,
        "signing_time": SIGNING_TIME,
    }


def test_certificate_of_another_key_is_failed_precondition(test_pki: Pki) -> None:
    spki, chain = _software_key_and_chain(test_pki)
    other_spki, _ = _software_key_and_chain(test_pki)
    args = _cms_args(other_spki, chain)

    with pytest.raises(FailedPrecondition, match="certificate does not match the signing key"):
        sign_cms_detached(**args)  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition, match="certificate does not match the signing key"):
        sign_pdf(
            pdf=blank_pdf(),
            hash_alg=HashAlgorithm.SHA256,
            key_algorithm=KeyAlgorithm.EC_P256,
            scheme=SignatureScheme.ECDSA,
            certificate_chain_der=chain,
            public_key_der=other_spki,
            sign=_never_sign,
            signing_time=SIGNING_TIME,
        )
    assert spki != other_spki


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"certificate_chain_der": ()}, "certificate chain is empty", id="empty-chain"),
        pytest.param(
            {"certificate_chain_der": (b"\x30\x03\x02\x01\x01",)},
            "certificate is not valid DER",
            id="bad-certificate",
        ),
        pytest.param(
            {"public_key_der": b"not a key"}, "public key is not valid SPKI DER", id="bad-key"
        ),
        pytest.param(
            {"content_digest": b"\x00" * 20},
            "document digest length does not match the hash algorithm",
            id="digest-length",
        ),
        pytest.param(
            {"key_algorithm": KeyAlgorithm.SM2, "scheme": SignatureScheme.SM2},
            "CMS with SM2 is not supported yet",
            id="sm2",
        ),
        pytest.param(
            {"hash_alg": HashAlgorithm.SM3}, "CMS with SM2 is not supported yet", id="sm3"
        ),
        pytest.param(
            {"scheme": SignatureScheme.RSA_PSS},
            "signature scheme not valid for this key",
            id="scheme-for-key",
        ),
        pytest.param(
            {"key_algorithm": KeyAlgorithm.EC_P384},
            "public key does not match the key algorithm",
            id="key-algorithm",
        ),
        pytest.param(
            {"signing_time": SIGNING_TIME.replace(tzinfo=None)},
            "signing time must carry a time zone",
            id="naive-time",
        ),
    ],
)
def test_sign_cms_detached_with_bad_input_is_invalid_argument(
    test_pki: Pki, change: dict[str, object], message: str
) -> None:
    args = _cms_args(*_software_key_and_chain(test_pki)) | change

    with pytest.raises(InvalidArgument) as failure:
        sign_cms_detached(**args)  # type: ignore[arg-type]
    assert failure.value.message == message


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_sign_pdf_passes_hsm_failure_through_and_unreachable_tsa_is_unavailable(
    test_pki: Pki,
) -> None:
    spki, chain = _software_key_and_chain(test_pki)

    def hsm_down(hash_alg: HashAlgorithm | None, data: bytes) -> bytes:
        raise Unavailable("key store unavailable")

    def pdf_with(sign: DigestSigner, timestamp: TimestampFn | None = None) -> bytes:
        return sign_pdf(
            pdf=blank_pdf(),
            hash_alg=HashAlgorithm.SHA256,
            key_algorithm=KeyAlgorithm.EC_P256,
            scheme=SignatureScheme.ECDSA,
            certificate_chain_der=chain,
            public_key_der=spki,
            sign=sign,
            signing_time=SIGNING_TIME,
            timestamp=timestamp,
        )

    with pytest.raises(Unavailable, match="key store unavailable"):
        pdf_with(hsm_down)
    with pytest.raises(Unavailable, match="timestamp authority did not answer"):
        pdf_with(_never_sign, http_timestamper(f"http://127.0.0.1:{_closed_port()}/tsa"))


def test_sign_pdf_with_empty_chain_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="certificate chain is empty"):
        sign_pdf(
            pdf=blank_pdf(),
            hash_alg=HashAlgorithm.SHA256,
            key_algorithm=KeyAlgorithm.EC_P256,
            scheme=SignatureScheme.ECDSA,
            certificate_chain_der=[],
            public_key_der=b"",
            sign=_never_sign,
            signing_time=SIGNING_TIME,
        )


def test_document_digest_is_the_plain_hash_of_the_document() -> None:
    assert document_digest(DOCUMENT, HashAlgorithm.SHA384) == hashlib.sha384(DOCUMENT).digest()
    with pytest.raises(InvalidArgument):
        document_digest(DOCUMENT, HashAlgorithm.SM3)


# ---- timestamps and serials ------------------------------------------------------------


def _imprint(token_der: bytes) -> tuple[str, bytes]:
    """The (hash name, hashed message) a timestamp token vouches for."""
    encap = asn1_cms.ContentInfo.load(token_der)["content"]["encap_content_info"]
    imprint = encap["content"].parsed["message_imprint"]
    return imprint["hash_algorithm"]["algorithm"].native, imprint["hashed_message"].native


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_http_timestamper_returns_a_trusted_token_over_the_imprint(
    test_pki: Pki, tsa_url: str, tmp_path: Path, hash_name: str
) -> None:
    digest = hashlib.new(hash_name, uuid.uuid4().bytes).digest()

    token = http_timestamper(tsa_url)(digest, hash_name).dump()

    assert _imprint(token) == (hash_name, digest)
    openssl_ts_verify(tmp_path, token, digest, test_pki.root_der)


@pytest.mark.softhsm
def test_cms_b_t_timestamps_the_signature_value_and_still_verifies_with_openssl(
    hsm_keys: dict[KeyAlgorithm, HsmKey], test_pki: Pki, tsa_url: str, tmp_path: Path
) -> None:
    key = hsm_keys[KeyAlgorithm.EC_P256]
    calls: list[HashAlgorithm | None] = []
    signature = _sign_cms(
        key, SignatureScheme.ECDSA, HashAlgorithm.SHA256, calls, http_timestamper(tsa_url)
    )

    assert "Verification successful" in openssl_cms_verify(
        tmp_path, signature, DOCUMENT, test_pki.root_der
    )
    assert calls == [HashAlgorithm.SHA256]
    signer_info = asn1_cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    imprint = hashlib.sha256(signer_info["signature"].native).digest()
    token = timestamp_token_of(signature)
    assert _imprint(token) == ("sha256", imprint)
    openssl_ts_verify(tmp_path, token, imprint, test_pki.root_der)
    without = _sign_cms(key, SignatureScheme.ECDSA, HashAlgorithm.SHA256, [])
    assert timestamp_token_of(without) == b""


def test_http_timestamper_with_unreachable_tsa_is_unavailable_and_hides_the_url() -> None:
    timestamp = http_timestamper(f"http://alice:s3cret@127.0.0.1:{_closed_port()}/tsa", 5.0)

    with pytest.raises(Unavailable) as failure:
        timestamp(hashlib.sha256(DOCUMENT).digest(), "sha256")
    assert failure.value.message == "timestamp authority did not answer"
    assert failure.value.__cause__ is None
    assert "s3cret" not in str(failure.value) and "127.0.0.1" not in str(failure.value)


def test_http_timestamper_sends_an_rfc3161_query_with_basic_auth_from_the_url(
    test_pki: Pki,
) -> None:
    seen: list[tuple[bytes, dict[str, str]]] = []
    answer = tsa_responder(test_pki.timestamper())

    def respond(body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        seen.append((body, headers))
        return answer(body, headers)

    digest = hashlib.sha384(DOCUMENT).digest()
    with serve_http(respond) as url:
        user_url = url.replace("http://", "http://alice:p%40ss@")
        timestamp = http_timestamper(user_url)
        first = timestamp(digest, "sha384")
        second = timestamp(digest, "sha384")

    assert _imprint(first.dump()) == _imprint(second.dump()) == ("sha384", digest)
    requests = [asn1_tsp.TimeStampReq.load(body) for body, _ in seen]
    assert [r["version"].native for r in requests] == ["v1", "v1"]
    assert all(r["cert_req"].native for r in requests)
    assert requests[0]["message_imprint"]["hashed_message"].native == digest
    assert requests[0]["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha384"
    nonces = [r["nonce"].native for r in requests]
    assert nonces[0] != nonces[1] and all(0 <= n < 2**64 for n in nonces)
    headers = seen[0][1]
    assert headers["Content-Type"] == "application/timestamp-query"
    assert headers["Authorization"] == "Basic YWxpY2U6cEBzcw=="  # alice:p@ss


def _ask_for_another(field: str) -> Callable[[asn1_tsp.TimeStampReq], asn1_tsp.TimeStampReq]:
    def change(request: asn1_tsp.TimeStampReq) -> asn1_tsp.TimeStampReq:
        native = request.native
        if field == "nonce":
            native["nonce"] += 1
        else:
            native["message_imprint"]["hashed_message"] = bytes(32)
        return asn1_tsp.TimeStampReq(native)

    return change


# A refusal as RFC 3161 has it: the status alone, no token (asn1crypto cannot build one).
_REJECTION = asn1_core.Sequence(
    contents=asn1_tsp.PKIStatusInfo({"status": "rejection", "fail_info": {"bad_alg"}}).dump()
).dump()


@pytest.fixture(scope="module")
def dummy_tsa(test_pki: Pki) -> DummyTimeStamper:
    return test_pki.timestamper()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        pytest.param((500, b"oops"), "timestamp authority answered HTTP 500", id="http-500"),
        pytest.param((302, b""), "timestamp authority answered HTTP 302", id="redirect"),
        pytest.param(
            (200, b"not DER"), "timestamp authority sent an unreadable reply", id="garbage"
        ),
        pytest.param(
            (200, _REJECTION),
            "timestamp authority refused the request (rejection: bad_alg)",
            id="rejected",
        ),
        pytest.param("nonce", "timestamp authority answered for another request", id="other-nonce"),
        pytest.param(
            "imprint", "timestamp authority answered for another request", id="other-imprint"
        ),
    ],
)
def test_http_timestamper_with_a_bad_reply_is_unavailable(
    dummy_tsa: DummyTimeStamper, reply: tuple[int, bytes] | str, message: str
) -> None:
    def respond(body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if isinstance(reply, tuple):
            return reply
        other = _ask_for_another(reply)(asn1_tsp.TimeStampReq.load(body))
        return 200, asyncio.run(dummy_tsa.async_request_tsa_response(other)).dump()

    with serve_http(respond) as url, pytest.raises(Unavailable) as failure:
        http_timestamper(url)(hashlib.sha256(DOCUMENT).digest(), "sha256")
    assert failure.value.message == message


@pytest.mark.parametrize(
    "url",
    ["", "ftp://tsa.example/", "file:///etc/hosts", "http://", "https://tsa.example:99999/"],
)
def test_http_timestamper_only_takes_http_urls(url: str) -> None:
    with pytest.raises(InvalidArgument, match="timestamp URL must be an http or https URL"):
        http_timestamper(url)


def test_http_timestamper_refuses_an_imprint_of_the_wrong_size(tsa_url: str) -> None:
    with pytest.raises(InvalidArgument, match="imprint"):
        http_timestamper(tsa_url)(b"\x00" * 20, "sha256")
    with pytest.raises(InvalidArgument, match="imprint"):
        http_timestamper(tsa_url)(b"\x00" * 20, "sha1")


def test_timestamp_token_of_unreadable_cms_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="not a readable CMS SignedData"):
        timestamp_token_of(b"\x30\x03\x02\x01\x01")
    with pytest.raises(InvalidArgument, match="not a readable CMS SignedData"):
        timestamp_token_of(asn1_cms.ContentInfo({"content_type": "data", "content": b"x"}).dump())


@pytest.mark.parametrize(
    ("serial", "text"),
    [
        pytest.param(0x0A, "a", id="small"),
        # DER prefixes a zero byte when the top bit is set; the text never carries it.
        pytest.param(0x80 << 56 | 1, "8000000000000001", id="high-bit"),
        pytest.param(0x1F00A3, "1f00a3", id="lowercase"),
    ],
)
def test_certificate_serial_is_minimal_lowercase_hex(test_pki: Pki, serial: int, text: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(test_pki.cert.subject)
        .issuer_name(test_pki.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(test_pki.key, hashes.SHA256())
    )

    assert certificate_serial(certificate.public_bytes(DER)) == text


def test_certificate_serial_of_unreadable_der_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="certificate is not valid DER"):
        certificate_serial(b"not a certificate")
