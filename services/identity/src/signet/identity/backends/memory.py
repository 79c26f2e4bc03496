"""In-process implementations for unit and component tests and HSM-less local runs.

:class:`MemoryKeyWrapper` keeps its key-encryption key in memory (nothing is protected by
hardware); :class:`MemoryGrantKeys` signs grants with an in-process EC key.
"""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signet.common.errors import Internal


class MemoryKeyWrapper:
    """AES-GCM key wrapping with a key held in process memory."""

    def __init__(self, kek: bytes | None = None, label: str = "memory-kek") -> None:
        self._kek = AESGCM(kek or AESGCM.generate_key(bit_length=256))
        self._label = label

    @property
    def label(self) -> str:
        """Name of the key-encryption key."""
        return self._label

    def wrap(self, key: bytes) -> bytes:
        """Encrypt ``key`` (nonce || ciphertext || tag)."""
        nonce = os.urandom(12)
        return nonce + self._kek.encrypt(nonce, key, self._label.encode())

    def unwrap(self, wrapped: bytes) -> bytes:
        """Decrypt what :meth:`wrap` produced."""
        try:
            return self._kek.decrypt(wrapped[:12], wrapped[12:], self._label.encode())
        except InvalidTag as err:
            raise Internal("personal data key could not be unwrapped") from err


class MemoryGrantKeys:
    """A grant-signing key in process memory (tests, local runs without a signer)."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        self._kid = "mem-" + uuid.uuid4().hex

    def create_key(self, request_id: str) -> tuple[str, bytes]:
        """The key id and SPKI DER of the (one) key."""
        spki = self._private.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        return self._kid, spki

    def sign_digest(self, kid: str, digest: bytes) -> bytes:
        """DER ECDSA over a SHA-256 digest."""
        if kid != self._kid:
            raise Internal("unknown grant key")
        return self._private.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
