"""Detached CMS SignedData in the CAdES baseline profile (B-B, and B-T with a timestamp).

The structure is built with asn1crypto; the signature over the signed attributes comes
from a callback, so the private key stays in the HSM. Only a digest of the document is
needed: the content itself never reaches the signer.

Signed attributes (ETSI EN 319 122-1, baseline B-B): content-type, message-digest,
signing-time and signing-certificate-v2 (the ESSCertIDv2 binding the signer certificate).
B-T adds a signature-time-stamp-token as an unsigned attribute over the signature value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms, tsp, x509

from signet.common.errors import InvalidArgument

_DIGEST_NAMES = {"sha256", "sha384", "sha512"}

SignFn = Callable[[bytes], bytes]
"""Signs the DER of the signed attributes and returns the raw signature value."""

TimestampFn = Callable[[bytes, str], cms.ContentInfo]
"""Given a digest of the signature value and its hash name, returns an RFC 3161 token."""


@dataclass(frozen=True)
class SignatureAlgorithm:
    """How the signer's key signs, and the digest used for content and signed attributes.

    ``scheme`` is one of "ecdsa", "rsa_pss", "rsa_pkcs1v15", "ed25519".
    """

    scheme: str
    digest: str

    def digest_algorithm(self) -> algos.DigestAlgorithm:
        """The DigestAlgorithmIdentifier of the SignerInfo."""
        return algos.DigestAlgorithm({"algorithm": self.digest})

    def signature_algorithm(self) -> algos.SignedDigestAlgorithm:
        """The SignatureAlgorithmIdentifier of the SignerInfo."""
        if self.scheme == "ecdsa":
            return algos.SignedDigestAlgorithm({"algorithm": f"{self.digest}_ecdsa"})
        if self.scheme == "rsa_pkcs1v15":
            return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
        if self.scheme == "rsa_pss":
            return algos.SignedDigestAlgorithm(
                {
                    "algorithm": "rsassa_pss",
                    "parameters": algos.RSASSAPSSParams(
                        {
                            "hash_algorithm": {"algorithm": self.digest},
                            "mask_gen_algorithm": {
                                "algorithm": "mgf1",
                                "parameters": {"algorithm": self.digest},
                            },
                            "salt_length": hashlib.new(self.digest).digest_size,
                            "trailer_field": "trailer_field_bc",
                        }
                    ),
                }
            )
        if self.scheme == "ed25519":
            return algos.SignedDigestAlgorithm({"algorithm": "ed25519"})
        raise InvalidArgument(f"unsupported signature scheme: {self.scheme}")


def signed_attributes(
    content_digest: bytes,
    algorithm: SignatureAlgorithm,
    signer_cert: x509.Certificate,
    signing_time: datetime,
) -> cms.CMSAttributes:
    """The CAdES B-B signed attributes for a detached signature over ``content_digest``."""
    if algorithm.digest not in _DIGEST_NAMES:
        raise InvalidArgument("digest algorithm must be sha256, sha384 or sha512")
    if len(content_digest) != hashlib.new(algorithm.digest).digest_size:
        raise InvalidArgument(f"document digest length does not match {algorithm.digest}")
    cert_hash = hashlib.new(algorithm.digest, signer_cert.dump()).digest()
    ess_cert = tsp.ESSCertIDv2(
        {
            "hash_algorithm": {"algorithm": algorithm.digest},
            "cert_hash": cert_hash,
            "issuer_serial": {
                "issuer": [x509.GeneralName({"directory_name": signer_cert.issuer})],
                "serial_number": signer_cert.serial_number,
            },
        }
    )
    return cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [content_digest]}),
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})]}
            ),
            cms.CMSAttribute(
                {
                    "type": "signing_certificate_v2",
                    "values": [tsp.SigningCertificateV2({"certs": [ess_cert]})],
                }
            ),
        ]
    )


def build_detached_signed_data(
    content_digest: bytes,
    algorithm: SignatureAlgorithm,
    signer_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    sign: SignFn,
    signing_time: datetime,
    timestamp: TimestampFn | None = None,
) -> bytes:
    """Build the DER ContentInfo of a detached CAdES signature (B-B, or B-T with ``timestamp``)."""
    attrs = signed_attributes(content_digest, algorithm, signer_cert, signing_time)
    signature = sign(attrs.dump())
    signer_info: dict[str, object] = {
        "version": "v1",
        "sid": cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": signer_cert.issuer,
                    "serial_number": signer_cert.serial_number,
                }
            }
        ),
        "digest_algorithm": algorithm.digest_algorithm(),
        "signed_attrs": attrs,
        "signature_algorithm": algorithm.signature_algorithm(),
        "signature": signature,
    }
    if timestamp is not None:
        imprint = hashlib.new(algorithm.digest, signature).digest()
        token = timestamp(imprint, algorithm.digest)
        signer_info["unsigned_attrs"] = cms.CMSAttributes(
            [cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]})]
        )
    certificates = [signer_cert] + [c for c in chain if c.dump() != signer_cert.dump()]
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algorithm.digest_algorithm()],
            "encap_content_info": {"content_type": "data"},
            "certificates": certificates,
            "signer_infos": [cms.SignerInfo(signer_info)],
        }
    )
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return der


def signing_time_of(signed_data_der: bytes) -> datetime:
    """The signing-time attribute of the first signer (used by tests and the evidence report)."""
    info = cms.ContentInfo.load(signed_data_der)
    signer = info["content"]["signer_infos"][0]
    for attr in signer["signed_attrs"]:
        if attr["type"].native == "signing_time":
            value = attr["values"][0].native
            if isinstance(value, datetime):
                return value
    raise InvalidArgument("signature has no signing-time attribute")


__all__ = [
    "SignFn",
    "SignatureAlgorithm",
    "TimestampFn",
    "build_detached_signed_data",
    "signed_attributes",
    "signing_time_of",
]
