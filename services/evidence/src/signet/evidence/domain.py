"""Evidence domain values and the interfaces of what the service depends on.

The log key and the TSA key live in the HSM behind the signer (:class:`KeyService`); the
TSA certificate comes from the ca-gateway (:class:`TsaCertificateSource`); certificates of
signers and their revocation status for packages come from the ca-gateway too
(:class:`CertificateDirectory`); tree heads go out to witnesses (:class:`WitnessExporter`).
Each has a gRPC/HTTP/file implementation under :mod:`signet.evidence.backends`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from signet.evidence.treehead import SignedTreeHead


class KeyPurpose(enum.StrEnum):
    """What a system key of the evidence service is for."""

    LOG_SIGNING = "log_signing"
    TIMESTAMPING = "timestamping"


@dataclass(frozen=True)
class SigningKey:
    """A system key in the HSM: its signer key id and public key (SPKI DER)."""

    key_id: str
    spki_der: bytes


class KeyService(Protocol):
    """The signer, as far as evidence needs it: system keys and digest signatures."""

    def create_system_key(self, purpose: KeyPurpose, request_id: str) -> SigningKey:
        """Create (or, for a repeated ``request_id``, return) an EC P-256 system key."""
        ...

    def sign_digest(self, key_id: str, digest: bytes) -> bytes:
        """ECDSA signature (DER) of a SHA-256 ``digest`` with the system key ``key_id``."""
        ...


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate for one of our keys and its chain (issuer first, root last), DER."""

    certificate_der: bytes
    chain_der: tuple[bytes, ...]


class TsaCertificateSource(Protocol):
    """Where the TSA's certificate comes from (the ca-gateway, profile timestamping)."""

    def certificate_for(self, key: SigningKey) -> CertifiedKey:
        """A timeStamping certificate over ``key`` and its chain."""
        ...


@dataclass(frozen=True)
class CertificateRecord:
    """A subscriber certificate and what the CA says about it at one instant."""

    serial: str
    certificate_der: bytes
    chain_der: tuple[bytes, ...]
    status: str
    status_at: datetime
    revoked_at: datetime | None = None
    revocation_reason: str = ""


class CertificateDirectory(Protocol):
    """The ca-gateway's certificate records, for evidence packages."""

    def certificate(self, serial: str, at_time: datetime) -> CertificateRecord | None:
        """Certificate ``serial``, its chain and its status at ``at_time``; None if unknown."""
        ...

    def ca_certificates(self) -> Sequence[bytes]:
        """The CA certificates (DER) relying parties trust."""
        ...


class WitnessExporter(Protocol):
    """Hands signed tree heads to an external witness that keeps them."""

    def export(
        self, head: SignedTreeHead, public_key_pem: str, consistency: ConsistencyProof | None
    ) -> None:
        """Deliver ``head`` with a proof from the previous head; raise on failure."""
        ...


@dataclass(frozen=True)
class EntryView:
    """One log entry as the service returns it."""

    id: int
    event_id: str
    event_type: str
    source: str
    subject: str
    tenant: str
    transaction_id: str
    event_time: datetime
    leaf_index: int | None
    leaf_hash: bytes
    leaf_data: bytes
    received_at: datetime
    integrated_at: datetime | None


@dataclass(frozen=True)
class InclusionProof:
    """An audit path of one entry against a signed tree head."""

    leaf_index: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]
    tree_head: SignedTreeHead


@dataclass(frozen=True)
class ConsistencyProof:
    """A proof that the tree of ``first_size`` is a prefix of the signed ``tree_head``."""

    first_size: int
    hashes: tuple[bytes, ...]
    tree_head: SignedTreeHead


@dataclass(frozen=True)
class EntryFilter:
    """GetEntries filters; empty fields do not filter."""

    start_index: int = 0
    transaction_id: str = ""
    digest_ref: str = ""
    event_type: str = ""
    tenant: str = ""


@dataclass(frozen=True)
class AppendResult:
    """An appended (or already present) entry."""

    entry: EntryView
    duplicate: bool


@dataclass(frozen=True)
class LogKeyView:
    """The published log key."""

    log_id: bytes
    spki_der: bytes
    pem: str


@dataclass
class IntegrationResult:
    """What one sequencer pass did."""

    first_index: int = 0
    event_ids: list[str] = field(default_factory=list)
    head: SignedTreeHead | None = None
