"""The signer's vocabulary: owners, purposes, key views, sign items and results."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from signet.common.errors import ServiceError
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.signer.models import KeyState


class Purpose(StrEnum):
    """What a key is for; subscriber keys sign for accounts, the rest for components."""

    SUBSCRIBER_SIGNING = "subscriber_signing"
    CA_SIGNING = "ca_signing"
    OCSP_SIGNING = "ocsp_signing"
    TIMESTAMPING = "timestamping"
    LOG_SIGNING = "log_signing"
    GRANT_SIGNING = "grant_signing"


class RetirementReason(StrEnum):
    """Why a key was disabled or destroyed."""

    UNSPECIFIED = "unspecified"
    CERTIFICATE_REVOKED = "certificate_revoked"
    KEY_COMPROMISE = "key_compromise"
    OWNER_REQUEST = "owner_request"
    ACCOUNT_CANCELLED = "account_cancelled"
    SUPERSEDED = "superseded"


DEFAULT_SCHEME = {
    KeyAlgorithm.EC_P256: SignatureScheme.ECDSA,
    KeyAlgorithm.EC_P384: SignatureScheme.ECDSA,
    KeyAlgorithm.RSA_2048: SignatureScheme.RSA_PSS,
    KeyAlgorithm.RSA_3072: SignatureScheme.RSA_PSS,
    KeyAlgorithm.RSA_4096: SignatureScheme.RSA_PSS,
    KeyAlgorithm.ED25519: SignatureScheme.ED25519,
    KeyAlgorithm.SM2: SignatureScheme.SM2,
}


@dataclass(frozen=True)
class KeyOwner:
    """A subscriber (tenant + account) or a platform component (system)."""

    tenant: str = ""
    account: str = ""
    system: str = ""

    @property
    def label(self) -> str:
        """Owner for messages: ``system:ca-gateway`` or ``tenant/account``."""
        return f"system:{self.system}" if self.system else f"{self.tenant}/{self.account}"


@dataclass(frozen=True)
class KeyView:
    """What callers may know about a key; never its private part."""

    key_id: str
    algorithm: KeyAlgorithm
    purpose: Purpose
    owner: KeyOwner
    state: KeyState
    public_key_der: bytes
    created_at: datetime
    last_used_at: datetime | None = None
    disabled_at: datetime | None = None
    destroyed_at: datetime | None = None
    retirement_reason: RetirementReason = RetirementReason.UNSPECIFIED
    sign_count: int = 0

    @property
    def spki_sha256(self) -> bytes:
        """SHA-256 of the public key (SPKI DER): a short, stable fingerprint."""
        return hashlib.sha256(self.public_key_der).digest()


@dataclass(frozen=True)
class SignItem:
    """One thing to sign: a digest, or for Ed25519 the message itself.

    ``hash_alg`` names the digest's algorithm; for Ed25519 it names the algorithm under
    which the grant names the message (SHA-256 when unset).
    """

    key_id: str
    data: bytes
    hash_alg: HashAlgorithm | None
    scheme: SignatureScheme | None = None
    grant: str = ""
    item_id: str = ""
    is_message: bool = False
    # What the grant names when it is not ``data`` itself: a document signature signs its
    # signed attributes, but the account consented to the document's digest.
    authorized_digest: bytes = b""
    # The business transaction of this item when items of one call differ (SignDigests
    # carries many callers' requests); otherwise the call's EventContext names it.
    transaction_id: str = ""


@dataclass(frozen=True)
class SignResult:
    """One item's outcome: a signature and its id, or the error that item got."""

    item_id: str
    signature: bytes = b""
    signature_id: str = ""
    scheme: SignatureScheme | None = None
    key_id: str = ""
    signed_at: datetime | None = None
    error: ServiceError | None = None


@dataclass(frozen=True)
class EventContext:
    """What the SignatureCreated events of one call carry besides the signature itself."""

    transaction_id: str = ""
    document_format: int = 0
    level: int = 0
    certificate_serial: str = ""
    timestamp_token_sha256: bytes = b""
    # SHA-256 of what the signature was delivered in (the CMS, the signed PDF); when
    # empty, the event records the hash of the signature value itself.
    output_sha256: bytes = b""
