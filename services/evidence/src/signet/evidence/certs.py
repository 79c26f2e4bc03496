"""Offline checks of certificate paths and RFC 3161 timestamp tokens.

Used by the package verifier with no network: a certificate path is checked link by link
(issuer name, signature, CA basic constraints, validity at the instant that matters) up to
one of the trusted roots; a timestamp token's CMS signature is checked against its TSA
certificate, which must carry the critical extended key usage timeStamping and chain to a
trusted root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

MAX_DEPTH = 6
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CertificateError(ValueError):
    """A certificate path or a timestamp token that does not verify."""


def load(der: bytes) -> x509.Certificate:
    """Parse a DER certificate; CertificateError when it is not one."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as err:
        raise CertificateError("not a DER certificate") from err


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _valid_at(cert: x509.Certificate, at: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise CertificateError(
            f"{what} was not valid at {at.isoformat()} (valid "
            f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})"
        )


def verify_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
) -> list[x509.Certificate]:
    """The path from ``leaf`` to a trusted root, valid at ``at``; CertificateError otherwise."""
    if not roots:
        raise CertificateError("no trusted CA certificate to check the path against")
    _valid_at(leaf, at, "the certificate")
    path = [leaf]
    current = leaf
    for _ in range(MAX_DEPTH):
        for root in roots:
            if root.subject == current.issuer and _issued_by(current, root):
                _valid_at(root, at, "the root CA certificate")
                path.append(root)
                return path
        issuer = next(
            (
                c
                for c in intermediates
                if c.subject == current.issuer and _is_ca(c) and _issued_by(current, c)
            ),
            None,
        )
        if issuer is None:
            raise CertificateError("the certificate does not chain to a trusted CA")
        _valid_at(issuer, at, "an issuing CA certificate")
        path.append(issuer)
        current = issuer
    raise CertificateError("the certificate path is too long")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified timestamp token says."""

    gen_time: datetime
    hash_algorithm: str
    imprint: bytes
    serial: int
    policy: str
    tsa_certificate: x509.Certificate


def verify_timestamp_token(
    token_der: bytes,
    extra_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> TimestampInfo:
    """Check an RFC 3161 token (ContentInfo) fully offline; CertificateError if it fails."""
    try:
        info = cms.ContentInfo.load(token_der, strict=True)
        if info["content_type"].native != "signed_data":
            raise CertificateError("the token is not CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise CertificateError("the token does not hold a TSTInfo")
        tst_der = encap["content"].parsed.dump()
        tst = tsp.TSTInfo.load(tst_der)
        signer_infos = signed["signer_infos"]
        if len(signer_infos) != 1:
            raise CertificateError("a timestamp token has exactly one signer")
        signer = signer_infos[0]
        embedded = [
            load(c.chosen.dump()) for c in (signed["certificates"] or []) if c.name == "certificate"
        ]
    except (ValueError, TypeError, KeyError) as err:
        raise CertificateError("the timestamp token is malformed") from err
    candidates = [*embedded, *extra_certificates]
    sid = signer["sid"]
    if sid.name != "issuer_and_serial_number":
        raise CertificateError("the token names its TSA certificate in an unsupported way")
    serial = sid.chosen["serial_number"].native
    issuer_der = sid.chosen["issuer"].dump()
    tsa_cert = next(
        (
            c
            for c in candidates
            if c.serial_number == serial and c.issuer.public_bytes() == issuer_der
        ),
        None,
    )
    if tsa_cert is None:
        raise CertificateError("the TSA certificate is neither in the token nor in the package")
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise CertificateError(f"unsupported digest algorithm {digest_name}")
    attrs = signer["signed_attrs"]
    values = {a["type"].native: a["values"][0] for a in attrs}
    if values.get("content_type") is None or values["content_type"].native != "tst_info":
        raise CertificateError("the signed content type is not TSTInfo")
    digest = hashlib.new(digest_name, tst_der).digest()
    if values.get("message_digest") is None or values["message_digest"].native != digest:
        raise CertificateError("the token's message digest does not match its TSTInfo")
    cert_der = tsa_cert.public_bytes(Encoding.DER)
    ess = values.get("signing_certificate_v2")
    if ess is not None:
        first = ess["certs"][0]
        alg = first["hash_algorithm"]["algorithm"].native
        if alg not in _HASHES or hashlib.new(alg, cert_der).digest() != first["cert_hash"].native:
            raise CertificateError("the token's signing-certificate attribute names another cert")
    elif values.get("signing_certificate") is None:
        raise CertificateError("the token lacks the ESS signing-certificate attribute")
    # The signature covers the attributes' DER as a SET OF, not as the [0]-tagged field.
    _check_signature(tsa_cert, signer, bytes(attrs.untag().dump()), digest_name)
    try:
        eku = tsa_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise CertificateError("the TSA certificate lacks extended key usage") from None
    if not eku.critical or ExtendedKeyUsageOID.TIME_STAMPING not in eku.value:
        raise CertificateError("the TSA certificate is not a critical timeStamping certificate")
    gen_time = tst["gen_time"].native
    if gen_time.tzinfo is None:
        gen_time = gen_time.replace(tzinfo=UTC)
    others = [c for c in candidates if c is not tsa_cert]
    verify_path(tsa_cert, others, roots, gen_time)
    imprint = tst["message_imprint"]
    return TimestampInfo(
        gen_time=gen_time,
        hash_algorithm=imprint["hash_algorithm"]["algorithm"].native,
        imprint=imprint["hashed_message"].native,
        serial=tst["serial_number"].native,
        policy=tst["policy"].native,
        tsa_certificate=tsa_cert,
    )


def _check_signature(
    cert: x509.Certificate, signer: cms.SignerInfo, signed_bytes: bytes, digest_name: str
) -> None:
    public = cert.public_key()
    signature = signer["signature"].native
    algorithm = _HASHES[digest_name]()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, signed_bytes, ec.ECDSA(algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, signed_bytes, padding.PKCS1v15(), algorithm)
        else:
            raise CertificateError("unsupported TSA key type")
    except InvalidSignature as err:
        raise CertificateError("the timestamp token's signature is not valid") from err
