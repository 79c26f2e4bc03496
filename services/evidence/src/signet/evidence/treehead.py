"""Signed tree heads: the bytes the log key signs, their JSON form, and their verification.

The signed bytes are RFC 6962's TreeHeadSignature structure (section 3.5): version v1 (0),
signature type tree_hash (1), timestamp in milliseconds (uint64), tree size (uint64) and the
32-byte root hash, 50 bytes in all. The log key is an ECDSA P-256 key; the signature is
ECDSA over SHA-256 of those bytes, DER-encoded. The log id is SHA-256 of the key's SPKI DER.

Pure and offline: the verifier CLI and witnesses use this module without a server.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

_VERSION_V1 = 0
_TREE_HASH = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TreeHeadError(ValueError):
    """A tree head that does not verify."""


@dataclass(frozen=True)
class SignedTreeHead:
    """A commitment to the first ``tree_size`` entries, signed by the log key."""

    log_id: bytes
    tree_size: int
    root_hash: bytes
    timestamp: datetime
    signature: bytes

    @property
    def timestamp_ms(self) -> int:
        """The timestamp as milliseconds since the epoch (what is signed)."""
        return timestamp_ms(self.timestamp)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (witness files, packages)."""
        return {
            "log_id": base64.b64encode(self.log_id).decode(),
            "tree_size": self.tree_size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "timestamp_ms": self.timestamp_ms,
            "timestamp": self.timestamp.isoformat(),
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedTreeHead:
        """Parse :meth:`to_json` output; ValueError/KeyError when malformed."""
        return cls(
            log_id=base64.b64decode(data["log_id"], validate=True),
            tree_size=int(data["tree_size"]),
            root_hash=base64.b64decode(data["root_hash"], validate=True),
            timestamp=from_timestamp_ms(int(data["timestamp_ms"])),
            signature=base64.b64decode(data["signature"], validate=True),
        )


def timestamp_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact, no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_timestamp_ms(ms: int) -> datetime:
    """The aware UTC datetime of a millisecond timestamp."""
    return _EPOCH + timedelta(milliseconds=ms)


def log_id_of(spki_der: bytes) -> bytes:
    """The log id: SHA-256 of the log key's SubjectPublicKeyInfo DER."""
    return hashlib.sha256(spki_der).digest()


def signing_input(tree_size: int, root_hash: bytes, ms: int) -> bytes:
    """RFC 6962 TreeHeadSignature bytes for one head."""
    if len(root_hash) != 32:
        raise ValueError("a root hash is 32 bytes")
    return struct.pack(">BBQQ", _VERSION_V1, _TREE_HASH, ms, tree_size) + root_hash


def signing_digest(tree_size: int, root_hash: bytes, ms: int) -> bytes:
    """SHA-256 of :func:`signing_input`: the digest the HSM signs."""
    return hashlib.sha256(signing_input(tree_size, root_hash, ms)).digest()


def verify_tree_head(head: SignedTreeHead, spki_der: bytes) -> None:
    """Raise TreeHeadError unless ``head`` is signed by the key ``spki_der`` of its log."""
    if head.log_id != log_id_of(spki_der):
        raise TreeHeadError("the tree head names another log (log id mismatch)")
    key = load_der_public_key(spki_der)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TreeHeadError("the log key is not an EC key")
    try:
        key.verify(
            head.signature,
            signing_input(head.tree_size, head.root_hash, head.timestamp_ms),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature as err:
        raise TreeHeadError("the tree head signature is not valid for the log key") from err
