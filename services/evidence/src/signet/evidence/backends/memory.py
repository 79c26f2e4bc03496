"""In-memory :class:`~signet.evidence.domain.KeyService` for unit tests; never for production.

Keys are software EC P-256 keys held in this process, with the same outputs as the signer
(SPKI DER public keys, DER ECDSA signatures over a SHA-256 digest).
"""

from __future__ import annotations

import threading
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signet.common.errors import NotFound
from signet.evidence.domain import KeyPurpose, SigningKey


class MemoryKeyService:
    """System keys in memory; ``created`` counts keys actually generated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._requests: dict[str, SigningKey] = {}
        self.created = 0
        self.signatures = 0

    def create_system_key(self, purpose: KeyPurpose, request_id: str) -> SigningKey:
        """Generate a key (or return the one of an earlier ``request_id``)."""
        with self._lock:
            if request_id in self._requests:
                return self._requests[request_id]
            private = ec.generate_private_key(ec.SECP256R1())
            key_id = "k-" + uuid.uuid4().hex
            spki = private.public_key().public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo
            )
            self._keys[key_id] = private
            key = SigningKey(key_id, spki)
            self._requests[request_id] = key
            self.created += 1
            return key

    def public_key(self, key_id: str) -> bytes:
        """The SPKI DER of a key made here."""
        with self._lock:
            private = self._keys.get(key_id)
        if private is None:
            raise NotFound(f"key {key_id} not found")
        return private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def sign_digest(self, key_id: str, digest: bytes) -> bytes:
        """ECDSA over a precomputed SHA-256 digest, DER-encoded."""
        with self._lock:
            private = self._keys.get(key_id)
            self.signatures += 1
        if private is None:
            raise NotFound(f"key {key_id} not found")
        return private.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
