"""Signing documents: detached CMS (CAdES) over any content, and PAdES inside a PDF.

Both entry points take the signer's certificate chain, the public key of the HSM key it was
issued for, and a :data:`DigestSigner` callback. The private key stays behind that callback
(the signer service wires it to its key backend), so this module only ever hands out digests
(for Ed25519, the DER of the signed attributes, never the document).

Inputs are checked before anything is signed: the scheme must suit the key algorithm, the
certificate must carry exactly the key that will sign, and the hash must be one CMS can name.
SM2 with SM3 is refused for now: neither the CMS builder nor pyHanko encode it yet.

Baseline B-T takes a :data:`TimestampFn` for both formats; :func:`http_timestamper` is the
RFC 3161 client over HTTP that the signer service wires to its timestamp authority.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import secrets
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from typing import Final

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import PdfSigningSession
from pyhanko.sign.timestamps import TimeStamper

from signet.common.errors import FailedPrecondition, Internal, InvalidArgument, Unavailable
from signet.common.keys import (
    KEY_SPECS,
    HashAlgorithm,
    KeyAlgorithm,
    KeyFamily,
    SignatureScheme,
)
from signet.signer.cms import (
    SignatureAlgorithm,
    SignFn,
    TimestampFn,
    build_detached_signed_data,
)

DigestSigner = Callable[[HashAlgorithm | None, bytes], bytes]
"""Signs with the HSM key: ``(hash, digest)``, or ``(None, message)`` for Ed25519.

The returned value is in Signet's signature format (ECDSA as DER ``Dss-Sig-Value``, RSA and
Ed25519 raw), which is also what CMS carries, so it is embedded unchanged.
"""

_HASH_NAMES: Final[dict[HashAlgorithm, str]] = {
    HashAlgorithm.SHA256: "sha256",
    HashAlgorithm.SHA384: "sha384",
    HashAlgorithm.SHA512: "sha512",
}

_SCHEME_NAMES: Final[dict[SignatureScheme, str]] = {
    SignatureScheme.ECDSA: "ecdsa",
    SignatureScheme.RSA_PSS: "rsa_pss",
    SignatureScheme.RSA_PKCS1V15: "rsa_pkcs1v15",
    SignatureScheme.ED25519: "ed25519",
}

_CURVE_NAMES: Final[dict[KeyAlgorithm, str]] = {
    KeyAlgorithm.EC_P256: "secp256r1",
    KeyAlgorithm.EC_P384: "secp384r1",
}

# Longest signature each key can produce; pyHanko sizes the PDF's signature slot from a dry
# run, so the placeholder must never be shorter than the real value. DER ECDSA is
# SEQUENCE { INTEGER r, INTEGER s } with a possible leading zero byte on each integer.
_MAX_SIGNATURE_BYTES: Final[dict[KeyAlgorithm, int]] = {
    KeyAlgorithm.EC_P256: 72,
    KeyAlgorithm.EC_P384: 104,
    KeyAlgorithm.ED25519: 64,
    **{
        alg: spec.rsa_bits // 8
        for alg, spec in KEY_SPECS.items()
        if spec.family is KeyFamily.RSA and spec.rsa_bits is not None
    },
}

_UNREADABLE_PDF = "document is not a readable PDF"

# A timestamp reply is a few KiB; anything far larger is not one.
_MAX_TIMESTAMP_REPLY_BYTES: Final = 1024 * 1024

# asn1crypto parses lazily: malformed DER fails on first access, as any of these.
_ASN1_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError, AttributeError)

# pyHanko reads a PDF lazily, so a damaged object surfaces wherever it is first followed, as
# whatever the parser or decompressor raised there. All of them mean the same to a caller.
_PDF_READ_ERRORS: Final = (
    PdfError,
    zlib.error,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    RecursionError,
)


@dataclass(frozen=True)
class _SigningSetup:
    """Checked inputs shared by the CMS and the PDF path."""

    algorithm: SignatureAlgorithm
    hash_alg: HashAlgorithm
    key_algorithm: KeyAlgorithm
    signer_cert: asn1_x509.Certificate
    chain: tuple[asn1_x509.Certificate, ...]

    def sign_fn(self, sign: DigestSigner) -> SignFn:
        """Turn the HSM callback into "sign these signed attributes" for the CMS builder."""
        if self.algorithm.scheme == "ed25519":
            # Pure EdDSA signs the message itself (RFC 8419); it is short, never the document.
            return lambda signed_attrs: sign(None, signed_attrs)
        digest_name = self.algorithm.digest
        return lambda signed_attrs: sign(
            self.hash_alg, hashlib.new(digest_name, signed_attrs).digest()
        )


def document_digest(document: bytes, hash_alg: HashAlgorithm) -> bytes:
    """The digest of ``document`` with ``hash_alg``: what a detached CMS signature covers."""
    return hashlib.new(_hash_name(hash_alg), document).digest()


def sign_cms_detached(
    *,
    content_digest: bytes,
    hash_alg: HashAlgorithm,
    key_algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    certificate_chain_der: Sequence[bytes],
    public_key_der: bytes,
    sign: DigestSigner,
    signing_time: datetime,
    timestamp: TimestampFn | None = None,
) -> bytes:
    """A detached CAdES signature (B-B, or B-T with ``timestamp``) over ``content_digest``.

    ``certificate_chain_der`` starts with the signer's certificate, followed by its issuers;
    all are embedded. ``public_key_der`` is the SPKI of the HSM key ``sign`` uses: the
    signer's certificate must carry that key, or the signature would name the wrong signer
    (FailedPrecondition). Bad input (empty chain, unreadable DER, digest of the wrong length,
    scheme not valid for the key, SM2) is InvalidArgument. Returns the DER ContentInfo.
    """
    setup = _prepare(
        hash_alg=hash_alg,
        key_algorithm=key_algorithm,
        scheme=scheme,
        certificate_chain_der=certificate_chain_der,
        public_key_der=public_key_der,
        signing_time=signing_time,
    )
    if len(content_digest) != hash_alg.digest_size:
        raise InvalidArgument("document digest length does not match the hash algorithm")
    return build_detached_signed_data(
        content_digest,
        setup.algorithm,
        setup.signer_cert,
        setup.chain,
        setup.sign_fn(sign),
        signing_time,
        timestamp,
    )


def sign_pdf(
    *,
    pdf: bytes,
    hash_alg: HashAlgorithm,
    key_algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    certificate_chain_der: Sequence[bytes],
    public_key_der: bytes,
    sign: DigestSigner,
    signing_time: datetime,
    field_name: str = "Signature1",
    reason: str = "",
    location: str = "",
    contact_info: str = "",
    timestamp: TimestampFn | None = None,
) -> bytes:
    """Add a PAdES signature to ``pdf`` as an incremental update; return the signed PDF.

    Baseline B-B, or B-T with ``timestamp`` (its token is added over the signature value;
    pyHanko asks it once more beforehand, over a dummy digest, to size the signature slot).
    The signature goes into an invisible field ``field_name``, created unless the document
    already has an empty one of that name.

    PAdES forbids the CMS signing-time attribute; the claimed signing time is the ``/M``
    entry of the signature dictionary, which is set to ``signing_time`` (pyHanko would
    otherwise put the local clock there). Certificate arguments and errors are as for
    :func:`sign_cms_detached`; in addition an unreadable PDF is InvalidArgument, a document
    whose own rules refuse the signature (certified, locked field, seed values) is
    FailedPrecondition, and whatever ``timestamp`` raises (Unavailable from
    :func:`http_timestamper`) passes through unchanged.
    """
    setup = _prepare(
        hash_alg=hash_alg,
        key_algorithm=key_algorithm,
        scheme=scheme,
        certificate_chain_der=certificate_chain_der,
        public_key_der=public_key_der,
        signing_time=signing_time,
    )
    if not field_name or "." in field_name:
        raise InvalidArgument("signature field name must be non-empty and contain no '.'")
    writer = _open_pdf(pdf)
    pdf_signer = _SigningTimePdfSigner(
        signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm=setup.algorithm.digest,
            subfilter=fields.SigSeedSubFilter.PADES,
            reason=reason or None,
            location=location or None,
            contact_info=contact_info or None,
        ),
        signer=_CallbackSigner(setup, sign),
        timestamper=None if timestamp is None else _CallbackTimeStamper(timestamp),
        signing_time=signing_time,
    )
    output = BytesIO()
    try:
        pdf_signer.sign_pdf(writer, output=output)
    except _CallbackError as failure:
        raise failure.error from None
    except SigningError:
        raise FailedPrecondition("the document does not allow this signature") from None
    except _PDF_READ_ERRORS:
        raise InvalidArgument(_UNREADABLE_PDF) from None
    return output.getvalue()


def certificate_serial(der: bytes) -> str:
    """The serial number of the DER certificate ``der``, as events and responses carry it.

    Lowercase hexadecimal of the integer, without leading zeros, separators or a prefix
    (``"1f00a3"``; ``"0"`` for zero), so one certificate always yields the same string
    whatever padding its DER encoding has. Unreadable DER is InvalidArgument.
    """
    return format(_load_certificate(der).serial_number, "x")


def timestamp_token_of(cms_der: bytes) -> bytes:
    """The DER of the signature-time-stamp token of the first signer of ``cms_der``.

    Empty when that signer has none (B-B). A ``cms_der`` that is not a readable CMS
    SignedData with a signer is InvalidArgument.
    """
    try:
        info = cms.ContentInfo.load(bytes(cms_der))
        if info["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        signer_infos = info["content"]["signer_infos"]
        if not len(signer_infos):
            raise ValueError("no signer")
        return _token_of(signer_infos[0])
    except _ASN1_ERRORS:
        raise InvalidArgument("signature is not a readable CMS SignedData") from None


def pdf_timestamp_token_of(pdf: bytes, field_name: str) -> bytes:
    """The DER of the signature-time-stamp token of the signature in field ``field_name``.

    Empty when that signature has none (B-B). A PDF without a signature in that field, or
    one that cannot be read, is InvalidArgument.
    """
    try:
        signatures = PdfFileReader(BytesIO(pdf)).embedded_signatures
        for signature in signatures:
            if signature.field_name == field_name:
                return _token_of(signature.signer_info)
    except (*_PDF_READ_ERRORS, *_ASN1_ERRORS):
        raise InvalidArgument(_UNREADABLE_PDF) from None
    raise InvalidArgument("the PDF has no signature in that field")


def http_timestamper(url: str, timeout: float = 10.0) -> TimestampFn:
    """An RFC 3161 client that asks the timestamp authority at ``url`` over HTTP(S).

    Each call POSTs a TimeStampReq (version 1, the imprint under the given hash, a random
    64-bit nonce, certReq) and returns the token of a granted reply whose TSTInfo echoes
    that nonce and imprint. The token's own signature is not checked here: it travels in
    the signature, where verifiers check it against their trust in the authority.

    ``url`` must be http or https (else InvalidArgument); user information in it is sent
    as HTTP basic authentication and never appears in a message. An unreachable authority,
    an HTTP error, an unreadable or refused reply are Unavailable; a reply for another
    request (nonce or imprint differ) is Unavailable too, as the token cannot be used.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise InvalidArgument("timestamp URL must be an http or https URL")
    headers = {
        "Content-Type": "application/timestamp-query",
        "Accept": "application/timestamp-reply",
    }
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {credentials}"
    target = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def timestamp(digest: bytes, hash_name: str) -> cms.ContentInfo:
        if (
            hash_name not in _HASH_NAMES.values()
            or len(digest) != hashlib.new(hash_name).digest_size
        ):
            raise InvalidArgument("timestamp imprint must be a SHA-256, SHA-384 or SHA-512 digest")
        nonce = secrets.randbits(64)
        request = tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": hash_name},
                    "hashed_message": digest,
                },
                "nonce": nonce,
                "cert_req": True,
            }
        )
        reply = _post_timestamp_request(target, headers, request.dump(), timeout)
        return _granted_token(reply, nonce, hash_name, digest)

    return timestamp


class _CallbackError(Exception):
    """Carries what the signing or timestamp callback raised through pyHanko, to re-raise as is.

    Without it an HSM or TSA failure could be mistaken for one of the document's own errors.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__("callback failed")
        self.error = error


class _CallbackSigner(signers.Signer):
    """A pyHanko signer whose raw signature comes from the :data:`DigestSigner` callback."""

    def __init__(self, setup: _SigningSetup, sign: DigestSigner) -> None:
        super().__init__(
            signing_cert=setup.signer_cert,
            signature_mechanism=setup.algorithm.signature_algorithm(),
        )
        # The default registry is an empty in-memory store; its certificates are embedded.
        for certificate in setup.chain:
            self.cert_registry.register(certificate)
        self._digest = setup.algorithm.digest
        self._sign = setup.sign_fn(sign)
        self._max_signature_bytes = _MAX_SIGNATURE_BYTES[setup.key_algorithm]

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        """Sign the signed attributes ``data``; a zero placeholder of full size on a dry run."""
        if dry_run:
            return bytes(self._max_signature_bytes)
        if digest_algorithm.lower() != self._digest:
            # The signature mechanism pins the digest, so pyHanko never asks for another.
            raise Internal()
        try:
            return self._sign(data)
        except Exception as error:
            raise _CallbackError(error) from error


class _CallbackTimeStamper(TimeStamper):
    """A pyHanko timestamper whose tokens come from a :data:`TimestampFn`.

    The callback builds the request (nonce included) and checks the reply itself, so both
    formats share one RFC 3161 client.
    """

    def __init__(self, timestamp: TimestampFn) -> None:
        super().__init__(include_nonce=False)  # type: ignore[no-untyped-call]
        self._timestamp = timestamp

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        """A token over ``message_digest``, from the callback."""
        try:
            return self._timestamp(message_digest, md_algorithm.lower())
        except Exception as error:
            raise _CallbackError(error) from error


class _SigningTimePdfSigner(signers.PdfSigner):
    """A PdfSigner that records the caller's signing time instead of the local clock.

    pyHanko takes the time for ``/M`` (and the appearance) from the signing session, which it
    creates with the current time and no way to pass another; the session keeps it in the
    public ``system_time`` attribute, read only after the session is set up.
    """

    def __init__(
        self,
        signature_meta: signers.PdfSignatureMetadata,
        signer: signers.Signer,
        *,
        timestamper: TimeStamper | None,
        signing_time: datetime,
    ) -> None:
        super().__init__(signature_meta, signer, timestamper=timestamper)
        self._signing_time = signing_time

    def init_signing_session(
        self, pdf_out: BasePdfFileWriter, existing_fields_only: bool = False
    ) -> PdfSigningSession:
        """Set up the session as pyHanko does, then pin its time to the signing time."""
        session = super().init_signing_session(pdf_out, existing_fields_only=existing_fields_only)
        session.system_time = self._signing_time
        return session


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a POSTed request would be replayed as a GET, or to another host."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> None:
        """No new request: the redirect surfaces as an HTTP error."""
        return None


_TSA_OPENER: Final = urllib.request.build_opener(_NoRedirect)


def _post_timestamp_request(
    url: str, headers: dict[str, str], body: bytes, timeout: float
) -> bytes:
    """POST a TimeStampReq; the reply body, or Unavailable naming what went wrong."""
    # The scheme was checked to be http(s) when the client was made.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _TSA_OPENER.open(request, timeout=timeout) as response:
            reply: bytes = response.read(_MAX_TIMESTAMP_REPLY_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise Unavailable(f"timestamp authority answered HTTP {error.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        raise Unavailable("timestamp authority did not answer") from None
    if len(reply) > _MAX_TIMESTAMP_REPLY_BYTES:
        raise Unavailable("timestamp authority sent an oversized reply")
    return reply


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """TimeStampResp as RFC 3161 defines it, with the token optional.

    asn1crypto's own type requires the token, which a refusal must not carry, so a refusal
    would read as garbage with it.
    """

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _granted_token(reply: bytes, nonce: int, hash_name: str, digest: bytes) -> cms.ContentInfo:
    """The token of a granted TimeStampResp that answers this very request."""
    try:
        response = _TimeStampResp.load(reply)
        status_info = response["status"]
        status = status_info["status"].native
        if status not in ("granted", "granted_with_mods"):
            failures = sorted(status_info["fail_info"].native or ())
            detail = f"{status}: {', '.join(failures)}" if failures else str(status)
            raise Unavailable(f"timestamp authority refused the request ({detail})")
        token = response["time_stamp_token"]
        if token["content_type"].native != "signed_data":
            raise ValueError("token is not SignedData")
        encap = token["content"]["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise ValueError("token does not carry a TSTInfo")
        tst_info = encap["content"].parsed
        imprint = tst_info["message_imprint"]
        answers = (
            tst_info["nonce"].native == nonce
            and imprint["hash_algorithm"]["algorithm"].native == hash_name
            and imprint["hashed_message"].native == digest
        )
    except _ASN1_ERRORS:
        raise Unavailable("timestamp authority sent an unreadable reply") from None
    if not answers:
        raise Unavailable("timestamp authority answered for another request")
    return token


def _token_of(signer_info: cms.SignerInfo) -> bytes:
    """The DER of the first signature-time-stamp token among the unsigned attributes."""
    for attribute in signer_info["unsigned_attrs"] or ():
        if attribute["type"].native == "signature_time_stamp_token":
            token: bytes = attribute["values"][0].dump()
            return token
    return b""


def _prepare(
    *,
    hash_alg: HashAlgorithm,
    key_algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    certificate_chain_der: Sequence[bytes],
    public_key_der: bytes,
    signing_time: datetime,
) -> _SigningSetup:
    if (
        scheme is SignatureScheme.SM2
        or key_algorithm is KeyAlgorithm.SM2
        or hash_alg is HashAlgorithm.SM3
    ):
        raise InvalidArgument("CMS with SM2 is not supported yet")
    digest_name = _hash_name(hash_alg)
    if scheme not in KEY_SPECS[key_algorithm].schemes:
        raise InvalidArgument("signature scheme not valid for this key")
    if scheme is SignatureScheme.ED25519 and hash_alg is not HashAlgorithm.SHA512:
        # RFC 8419 section 3.1: with signed attributes, Ed25519 goes with SHA-512.
        raise InvalidArgument("Ed25519 signatures require SHA512")
    if signing_time.tzinfo is None or signing_time.utcoffset() is None:
        raise InvalidArgument("signing time must carry a time zone")
    if not certificate_chain_der:
        raise InvalidArgument("certificate chain is empty")
    certificates = [_load_certificate(der) for der in certificate_chain_der]
    _check_key(certificates[0], public_key_der, key_algorithm)
    chain = tuple(asn1_x509.Certificate.load(bytes(der)) for der in certificate_chain_der)
    return _SigningSetup(
        algorithm=SignatureAlgorithm(_SCHEME_NAMES[scheme], digest_name),
        hash_alg=hash_alg,
        key_algorithm=key_algorithm,
        signer_cert=chain[0],
        chain=chain,
    )


def _hash_name(hash_alg: HashAlgorithm) -> str:
    name = _HASH_NAMES.get(hash_alg)
    if name is None:
        raise InvalidArgument("hash algorithm not supported for documents")
    return name


def _load_certificate(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(bytes(der))
    except (ValueError, TypeError):
        raise InvalidArgument("certificate is not valid DER") from None


def _check_key(
    certificate: x509.Certificate, public_key_der: bytes, key_algorithm: KeyAlgorithm
) -> None:
    """The signer's certificate must hold exactly the key that will sign, of its algorithm."""
    try:
        key = serialization.load_der_public_key(bytes(public_key_der))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidArgument("public key is not valid SPKI DER") from None
    if not _is_key_of(key, key_algorithm):
        raise InvalidArgument("public key does not match the key algorithm")
    try:
        certified = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise FailedPrecondition("certificate does not match the signing key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certified.public_bytes(*spki) != key.public_bytes(*spki):
        raise FailedPrecondition("certificate does not match the signing key")


def _is_key_of(key: object, key_algorithm: KeyAlgorithm) -> bool:
    spec = KEY_SPECS[key_algorithm]
    if spec.family is KeyFamily.RSA:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size == spec.rsa_bits
    if spec.family is KeyFamily.EDWARDS:
        return isinstance(key, ed25519.Ed25519PublicKey)
    return (
        isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVE_NAMES[key_algorithm]
    )


def _open_pdf(pdf: bytes) -> IncrementalPdfFileWriter:
    """Parse the document far enough to sign it; any parse failure is the caller's input."""
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf))
        # The root and its form are what signing touches first; reading them here makes
        # most damage show up now, as a clean error, rather than deep inside pyHanko.
        writer.root.get("/AcroForm")
    except _PDF_READ_ERRORS:
        raise InvalidArgument(_UNREADABLE_PDF) from None
    if writer.prev.encrypted:
        raise InvalidArgument("encrypted PDFs are not supported")
    return writer


__all__ = [
    "DigestSigner",
    "TimestampFn",
    "certificate_serial",
    "document_digest",
    "http_timestamper",
    "pdf_timestamp_token_of",
    "sign_cms_detached",
    "sign_pdf",
    "timestamp_token_of",
]
