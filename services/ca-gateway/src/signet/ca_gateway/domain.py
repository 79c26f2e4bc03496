"""The CA gateway's domain values: profiles, statuses, revocation reasons and views.

These are plain values so that :mod:`signet.ca_gateway.service` needs no protobuf; the
servicer converts them to and from the API (:mod:`signet.ca_gateway.convert`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from signet.common.errors import InvalidArgument
from signet.common.keys import KeyAlgorithm


class CertificateProfile(enum.StrEnum):
    """What a certificate is for; the profile table in :mod:`.profiles` gives its contents."""

    PERSON_SIGNING = "person_signing"
    ENTERPRISE_SEAL = "enterprise_seal"
    TIMESTAMPING = "timestamping"
    OCSP_RESPONDER = "ocsp_responder"


class CertificateStatus(enum.StrEnum):
    """The status of a certificate at an instant."""

    GOOD = "good"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNKNOWN = "unknown"


class RevocationInitiator(enum.StrEnum):
    """Who asked for a revocation."""

    UNSPECIFIED = "unspecified"
    SUBSCRIBER = "subscriber"
    PLATFORM = "platform"
    CA = "ca"


class RevocationReason(enum.StrEnum):
    """Why a certificate was revoked: the RFC 5280 reasons plus the platform's grounds.

    Each platform ground (from the subscriber agreements) is published on the CRL and in
    OCSP as the RFC 5280 code :attr:`rfc_code` gives.
    """

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key_compromise"
    CA_COMPROMISE = "ca_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"
    CERTIFICATE_HOLD = "certificate_hold"
    REMOVE_FROM_CRL = "remove_from_crl"
    PRIVILEGE_WITHDRAWN = "privilege_withdrawn"
    AA_COMPROMISE = "aa_compromise"
    PLATFORM_FALSE_DATA = "platform_false_data"
    PLATFORM_CHANGED_DATA = "platform_changed_data"
    PLATFORM_KEY_LOSS = "platform_key_loss"
    PLATFORM_MISUSE = "platform_misuse"
    PLATFORM_SUBJECT_EXPIRED = "platform_subject_expired"
    PLATFORM_ILLEGAL_USE = "platform_illegal_use"

    @property
    def rfc_code(self) -> int:
        """The RFC 5280 CRLReason code published for this reason."""
        return _RFC_CODES[self]

    @property
    def compromises_key(self) -> bool:
        """Whether the key itself is unsafe, so every certificate on it must go."""
        return self.rfc_code == 1


_RFC_CODES: dict[RevocationReason, int] = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.REMOVE_FROM_CRL: 8,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
    RevocationReason.PLATFORM_FALSE_DATA: 9,
    RevocationReason.PLATFORM_CHANGED_DATA: 3,
    RevocationReason.PLATFORM_KEY_LOSS: 1,
    RevocationReason.PLATFORM_MISUSE: 9,
    RevocationReason.PLATFORM_SUBJECT_EXPIRED: 5,
    RevocationReason.PLATFORM_ILLEGAL_USE: 9,
}

# Names asn1crypto uses for the CRLReason codes (CRL entries and OCSP).
RFC_REASON_NAMES: dict[int, str] = {
    0: "unspecified",
    1: "key_compromise",
    2: "ca_compromise",
    3: "affiliation_changed",
    4: "superseded",
    5: "cessation_of_operation",
    6: "certificate_hold",
    8: "remove_from_crl",
    9: "privilege_withdrawn",
    10: "aa_compromise",
}

# Reasons a revocation request may not carry: the gateway only revokes for good.
NOT_REVOCABLE_FOR = frozenset({RevocationReason.CERTIFICATE_HOLD, RevocationReason.REMOVE_FROM_CRL})


class CaRole(enum.StrEnum):
    """Role of a CA-side certificate."""

    ROOT = "root"
    ISSUING = "issuing"
    OCSP_RESPONDER = "ocsp_responder"
    TIMESTAMPING = "timestamping"


class AccountType(enum.StrEnum):
    """Kind of subscriber account, as identity reports it."""

    PERSON = "person"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True)
class AccountInfo:
    """What the gateway needs to know of a subscriber account (from identity)."""

    account_id: str
    tenant: str
    type: AccountType
    verified: bool
    # Real name (person) or registered enterprise name: the subject's common name.
    name: str
    # Keyed hash of the resident ID number or credit code (never the identifier itself).
    identifier_hash: bytes


@dataclass(frozen=True)
class KeyInfo:
    """A signer key as the gateway sees it: algorithm, owner, public key, state."""

    key_id: str
    algorithm: KeyAlgorithm
    spki_der: bytes
    tenant: str
    account_id: str
    system_owner: str
    active: bool


@dataclass(frozen=True)
class RevocationView:
    """How and when a certificate was revoked."""

    revoked_at: datetime
    reason: RevocationReason
    initiator: RevocationInitiator
    invalidity_date: datetime | None
    requested_by: str


@dataclass(frozen=True)
class CertificateView:
    """An issued certificate and its record, with its status at ``as_of``."""

    serial: str
    tenant: str
    account_id: str
    system_owner: str
    key_id: str
    key_algorithm: KeyAlgorithm
    profile: CertificateProfile
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    status: CertificateStatus
    revocation: RevocationView | None
    auto_renewal: bool
    renew_before: timedelta | None
    renewed_from: str
    renewed_by: str
    der: bytes
    sha256: bytes


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with the chain above it (issuing CA first, root last)."""

    certificate: CertificateView
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class StatusAnswer:
    """The status of a serial at an instant, and when the gateway answered."""

    serial: str
    at_time: datetime
    status: CertificateStatus
    revocation: RevocationView | None
    produced_at: datetime


@dataclass(frozen=True)
class CaCertificateView:
    """A CA-side certificate for trust stores, and where its CRL and OCSP live."""

    ca_id: str
    role: CaRole
    subject: str
    not_before: datetime
    not_after: datetime
    der: bytes
    crl_url: str
    ocsp_url: str


@dataclass(frozen=True)
class Page:
    """One page of certificates and the token of the next (empty at the end)."""

    certificates: tuple[CertificateView, ...]
    next_page_token: str


def normalize_serial(serial: str) -> str:
    """A serial as stored: lower-case hex without separators or leading zeros.

    Accepts the forms tools print (``0A:1B``, ``0x0a1b``, upper case); anything else is
    INVALID_ARGUMENT.
    """
    text = serial.strip().lower().replace(":", "")
    if text.startswith("0x"):
        text = text[2:]
    if not text or len(text) > 40 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidArgument("serial must be a certificate serial number in hex (up to 20 bytes)")
    text = text.lstrip("0")
    if not text:
        raise InvalidArgument("serial must not be zero")
    return text


def serial_hex(serial: int) -> str:
    """The stored form of an integer serial."""
    return format(serial, "x")
