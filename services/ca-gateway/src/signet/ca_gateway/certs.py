"""X.509 certificates and CRLs built as ASN.1 (asn1crypto), signed by a key in the HSM.

A CA key never leaves the token, so no X.509 library can sign here: the TBS structure is
built and DER-encoded with asn1crypto, its digest is signed through the signer service,
and the signature is put in place. Everything the platform's certificates carry lives
here once: subject and issuer names, key identifiers (RFC 7093 method 1), CRL
distribution points, AIA, policies, and the per-profile key usages.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos, core, keys, x509
from asn1crypto import crl as asn1_crl

from signet.ca_gateway.domain import RFC_REASON_NAMES
from signet.common.errors import FailedPrecondition, InvalidArgument
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme

DigestSigner = Callable[[bytes, HashAlgorithm, SignatureScheme], bytes]
"""Signs a digest with a CA-side key in the HSM: (digest, its hash, scheme) -> signature."""

# RFC 5280 4.1.2.5: dates through 2049 as UTCTime, from 2050 as GeneralizedTime.
_UTC_TIME_LIMIT = datetime(2050, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SignatureSpec:
    """How a CA-side key of one algorithm signs a certificate, CRL or OCSP response."""

    asn1_name: str
    hash: HashAlgorithm
    scheme: SignatureScheme

    def algorithm(self) -> algos.SignedDigestAlgorithm:
        """The AlgorithmIdentifier to put in the signed structure."""
        return algos.SignedDigestAlgorithm({"algorithm": self.asn1_name})

    def sign(self, tbs_der: bytes, sign_digest: DigestSigner) -> bytes:
        """Hash ``tbs_der`` and have the key sign the digest."""
        digest = hashlib.new(self.hash.value.lower(), tbs_der).digest()
        return sign_digest(digest, self.hash, self.scheme)


# Key algorithms CA-side keys may have, and how each signs (ECDSA with the curve's
# matching hash; RSA with PKCS#1 v1.5, which every relying party accepts).
_SPECS: dict[KeyAlgorithm, SignatureSpec] = {
    KeyAlgorithm.EC_P256: SignatureSpec(
        "sha256_ecdsa", HashAlgorithm.SHA256, SignatureScheme.ECDSA
    ),
    KeyAlgorithm.EC_P384: SignatureSpec(
        "sha384_ecdsa", HashAlgorithm.SHA384, SignatureScheme.ECDSA
    ),
    KeyAlgorithm.RSA_2048: SignatureSpec(
        "sha256_rsa", HashAlgorithm.SHA256, SignatureScheme.RSA_PKCS1V15
    ),
    KeyAlgorithm.RSA_3072: SignatureSpec(
        "sha256_rsa", HashAlgorithm.SHA256, SignatureScheme.RSA_PKCS1V15
    ),
    KeyAlgorithm.RSA_4096: SignatureSpec(
        "sha384_rsa", HashAlgorithm.SHA384, SignatureScheme.RSA_PKCS1V15
    ),
}

CA_KEY_ALGORITHMS = frozenset(_SPECS)
"""Algorithms a CA, OCSP responder or other CA-side signing key may use."""


def signature_spec(algorithm: KeyAlgorithm) -> SignatureSpec:
    """How a CA-side key of ``algorithm`` signs; FAILED_PRECONDITION for other algorithms."""
    spec = _SPECS.get(algorithm)
    if spec is None:
        allowed = ", ".join(sorted(a.value for a in CA_KEY_ALGORITHMS))
        raise FailedPrecondition(f"CA-side keys must be one of {allowed}, not {algorithm.value}")
    return spec


def new_serial() -> int:
    """A serial number from the CSPRNG: 127 random bits, positive, never zero.

    RFC 5280 allows up to 20 octets; CA/B Forum practice asks for at least 64 bits of
    entropy. 16 octets with the top bit clear stay positive in DER without padding.
    """
    while True:
        value = int.from_bytes(secrets.token_bytes(16), "big") >> 1
        if value:
            return value


def whole_seconds(instant: datetime) -> datetime:
    """``instant`` in UTC without fractions of a second (DER times carry whole seconds)."""
    return instant.astimezone(UTC).replace(microsecond=0)


def x509_time(instant: datetime) -> x509.Time:
    """A Time as RFC 5280 wants it: UTCTime before 2050, GeneralizedTime from then on."""
    instant = whole_seconds(instant)
    if instant < _UTC_TIME_LIMIT:
        return x509.Time({"utc_time": instant})
    return x509.Time({"general_time": instant})


def build_name(attributes: Sequence[tuple[str, str]]) -> x509.Name:
    """A distinguished name from (asn1crypto attribute name, value) pairs, in the given order.

    Text goes in as UTF8String (Chinese names included), except the types X.520 requires
    as PrintableString (country, serial number).
    """
    rdns = [
        x509.RelativeDistinguishedName([_name_attribute(attr_type, value)])
        for attr_type, value in attributes
        if value
    ]
    return x509.Name(name="", value=x509.RDNSequence(rdns))


def _name_attribute(attr_type: str, value: str) -> x509.NameTypeAndValue:
    if attr_type in ("country_name", "serial_number"):
        if attr_type == "country_name" and len(value) != 2:
            raise InvalidArgument("country must be a two-letter ISO 3166 code")
        encoded: core.Asn1Value = core.PrintableString(value)
    else:
        encoded = x509.DirectoryString(name="utf8_string", value=value)
    return x509.NameTypeAndValue({"type": attr_type, "value": encoded})


def key_identifier(spki_der: bytes) -> bytes:
    """RFC 7093 method 1: the leftmost 160 bits of SHA-256 over the subjectPublicKey bits."""
    public_key = keys.PublicKeyInfo.load(spki_der)["public_key"]
    return hashlib.sha256(public_key.contents[1:]).digest()[:20]


@dataclass(frozen=True)
class Extensions:
    """What goes into a certificate's extensions, profile and CA data combined."""

    is_ca: bool
    path_length: int | None
    key_usage: frozenset[str]
    extended_key_usage: tuple[str, ...] = ()
    extended_key_usage_critical: bool = False
    ocsp_no_check: bool = False
    crl_url: str = ""
    ocsp_url: str = ""
    ca_issuers_url: str = ""
    policy_oid: str = ""
    cps_url: str = ""


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)


def _extensions(
    ext: Extensions, subject_key_id: bytes, authority_key_id: bytes | None
) -> list[x509.Extension]:
    out = [
        x509.Extension(
            {
                "extn_id": "basic_constraints",
                "critical": True,
                "extn_value": x509.BasicConstraints(
                    {"ca": ext.is_ca, "path_len_constraint": ext.path_length}
                    if ext.is_ca and ext.path_length is not None
                    else {"ca": ext.is_ca}
                ),
            }
        ),
        x509.Extension(
            {
                "extn_id": "key_usage",
                "critical": True,
                "extn_value": x509.KeyUsage(set(ext.key_usage)),
            }
        ),
        x509.Extension(
            {"extn_id": "key_identifier", "critical": False, "extn_value": subject_key_id}
        ),
    ]
    if authority_key_id is not None:
        out.append(
            x509.Extension(
                {
                    "extn_id": "authority_key_identifier",
                    "critical": False,
                    "extn_value": {"key_identifier": authority_key_id},
                }
            )
        )
    if ext.extended_key_usage:
        out.append(
            x509.Extension(
                {
                    "extn_id": "extended_key_usage",
                    "critical": ext.extended_key_usage_critical,
                    "extn_value": list(ext.extended_key_usage),
                }
            )
        )
    if ext.crl_url:
        out.append(
            x509.Extension(
                {
                    "extn_id": "crl_distribution_points",
                    "critical": False,
                    "extn_value": [{"distribution_point": {"full_name": [_uri(ext.crl_url)]}}],
                }
            )
        )
    access = []
    if ext.ocsp_url:
        access.append(
            {
                "access_method": "ocsp",
                "access_location": _uri(ext.ocsp_url),
            }
        )
    if ext.ca_issuers_url:
        access.append(
            {
                "access_method": "ca_issuers",
                "access_location": _uri(ext.ca_issuers_url),
            }
        )
    if access:
        out.append(
            x509.Extension(
                {"extn_id": "authority_information_access", "critical": False, "extn_value": access}
            )
        )
    if ext.policy_oid:
        policy: dict[str, object] = {"policy_identifier": ext.policy_oid}
        if ext.cps_url:
            policy["policy_qualifiers"] = [
                {
                    "policy_qualifier_id": "certification_practice_statement",
                    "qualifier": core.IA5String(ext.cps_url),
                }
            ]
        out.append(
            x509.Extension(
                {"extn_id": "certificate_policies", "critical": False, "extn_value": [policy]}
            )
        )
    if ext.ocsp_no_check:
        out.append(
            x509.Extension({"extn_id": "ocsp_no_check", "critical": False, "extn_value": None})
        )
    return out


@dataclass(frozen=True)
class CertificateTemplate:
    """Everything a certificate states, before the issuer signs it."""

    serial: int
    subject: x509.Name
    spki_der: bytes
    not_before: datetime
    not_after: datetime
    extensions: Extensions


@dataclass(frozen=True)
class Issuer:
    """A CA that signs: its name, key identifier, and how its HSM key signs."""

    name: x509.Name
    key_id: bytes
    spec: SignatureSpec
    sign_digest: DigestSigner


def self_issuer(template: CertificateTemplate, spec: SignatureSpec, sign: DigestSigner) -> Issuer:
    """The issuer of a self-signed (root) certificate: the template's own subject and key."""
    return Issuer(template.subject, key_identifier(template.spki_der), spec, sign)


def issue_certificate(template: CertificateTemplate, issuer: Issuer) -> bytes:
    """Build the TBSCertificate, have the issuer's key sign it, return the certificate DER."""
    if template.not_after <= template.not_before:
        raise InvalidArgument("a certificate must end after it begins")
    try:
        spki = keys.PublicKeyInfo.load(template.spki_der)
        spki.native  # noqa: B018  (parses the whole structure now, not at dump time)
    except ValueError as err:
        raise InvalidArgument("the public key is not a DER SubjectPublicKeyInfo") from err
    subject_key_id = key_identifier(template.spki_der)
    self_signed = issuer.key_id == subject_key_id
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": template.serial,
            "signature": issuer.spec.algorithm(),
            "issuer": issuer.name,
            "validity": {
                "not_before": x509_time(template.not_before),
                "not_after": x509_time(template.not_after),
            },
            "subject": template.subject,
            "subject_public_key_info": spki,
            "extensions": _extensions(
                template.extensions, subject_key_id, None if self_signed else issuer.key_id
            ),
        }
    )
    signature = issuer.spec.sign(tbs.dump(), issuer.sign_digest)
    certificate = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": issuer.spec.algorithm(),
            "signature_value": signature,
        }
    )
    return bytes(certificate.dump())


@dataclass(frozen=True)
class CrlEntry:
    """One revoked certificate on a CRL."""

    serial: int
    revoked_at: datetime
    rfc_reason: int
    invalidity_date: datetime | None


def issue_crl(
    issuer: Issuer,
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    entries: Sequence[CrlEntry],
) -> bytes:
    """A complete v2 CRL of ``issuer`` (RFC 5280 5.1), signed by its HSM key."""
    revoked = []
    for entry in entries:
        extensions = []
        # RFC 5280 5.3.1: omit the reason rather than use "unspecified".
        if entry.rfc_reason:
            extensions.append(
                {
                    "extn_id": "crl_reason",
                    "critical": False,
                    "extn_value": RFC_REASON_NAMES[entry.rfc_reason],
                }
            )
        if entry.invalidity_date is not None:
            extensions.append(
                {
                    "extn_id": "invalidity_date",
                    "critical": False,
                    "extn_value": core.GeneralizedTime(whole_seconds(entry.invalidity_date)),
                }
            )
        item: dict[str, object] = {
            "user_certificate": entry.serial,
            "revocation_date": x509_time(entry.revoked_at),
        }
        if extensions:
            item["crl_entry_extensions"] = extensions
        revoked.append(item)
    tbs_fields: dict[str, object] = {
        "version": "v2",
        "signature": issuer.spec.algorithm(),
        "issuer": issuer.name,
        "this_update": x509_time(this_update),
        "next_update": x509_time(next_update),
        "crl_extensions": [
            {"extn_id": "crl_number", "critical": False, "extn_value": number},
            {
                "extn_id": "authority_key_identifier",
                "critical": False,
                "extn_value": {"key_identifier": issuer.key_id},
            },
        ],
    }
    if revoked:
        tbs_fields["revoked_certificates"] = revoked
    tbs = asn1_crl.TbsCertList(tbs_fields)
    signature = issuer.spec.sign(tbs.dump(), issuer.sign_digest)
    crl = asn1_crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": issuer.spec.algorithm(),
            "signature": signature,
        }
    )
    return bytes(crl.dump())


def subject_text(name: x509.Name) -> str:
    """The RFC 4514 form of a name, most specific attribute first."""
    return _rfc4514(name)


_SHORT = {
    "common_name": "CN",
    "country_name": "C",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "serial_number": "serialNumber",
    "locality_name": "L",
    "state_or_province_name": "ST",
}


def _rfc4514(name: x509.Name) -> str:
    parts = []
    for rdn in reversed(list(name.chosen)):
        for attr in rdn:
            short = _SHORT.get(attr["type"].native, attr["type"].dotted)
            value = str(attr["value"].native)
            escaped = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
            parts.append(f"{short}={escaped}")
    return ",".join(parts)


def certificate_sha256(der: bytes) -> bytes:
    """The SHA-256 fingerprint of a certificate."""
    return hashlib.sha256(der).digest()


def to_pem(der: bytes, label: str = "CERTIFICATE") -> str:
    """PEM armour for ``der``."""
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
