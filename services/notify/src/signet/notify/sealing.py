"""Sealing of what notify must keep but never store in clear, and keyed recipient hashes.

Literal addresses, sensitive template parameters (one-time codes) and webhook secrets
are sealed with AES-256-GCM under the service's data key; the record id is the associated
data, so a sealed value copied onto another record does not open. Recipients are found
again by an HMAC of the normalised address, never by the address itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signet.common.errors import Internal

log = logging.getLogger(__name__)

_NONCE_BYTES = 12
_VERSION = b"\x01"


class Sealer:
    """AES-256-GCM sealing and keyed hashing under one 32-byte data key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(hmac.new(key, b"signet-notify-seal", hashlib.sha256).digest())
        self._hash_key = hmac.new(key, b"signet-notify-recipient", hashlib.sha256).digest()

    @classmethod
    def from_setting(cls, encoded: str) -> Sealer:
        """From the base64 setting; empty gives a random key (sealed data dies with the process)."""
        if not encoded:
            log.warning("no data key configured: sealed data will not survive a restart")
            return cls(os.urandom(32))
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError("the data key must be base64") from err
        return cls(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` (e.g. the record id)."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        """Decrypt what :meth:`seal` made for ``context``; Internal when it does not open."""
        if len(sealed) < 1 + _NONCE_BYTES or sealed[:1] != _VERSION:
            raise Internal("a sealed value is malformed")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, context.encode())
        except InvalidTag as err:
            raise Internal("a sealed value cannot be opened with the current data key") from err

    def seal_json(self, value: dict[str, str], context: str) -> bytes:
        """Seal a string mapping (sensitive template parameters)."""
        return self.seal(json.dumps(value, sort_keys=True).encode(), context)

    def open_json(self, sealed: bytes, context: str) -> dict[str, str]:
        """Open what :meth:`seal_json` sealed."""
        value = json.loads(self.open(sealed, context))
        if not isinstance(value, dict):
            raise Internal("a sealed value is malformed")
        return {str(k): str(v) for k, v in value.items()}

    def recipient_hash(self, kind: str, value: str) -> str:
        """Keyed hash (hex) of a recipient: ``kind`` is account, email, phone or webhook."""
        return hmac.new(self._hash_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
