"""Key wrapping with an AES key-encryption key inside the HSM (PKCS#11, SoftHSM in tests).

The KEK is a token object (label from settings), generated on first use with
SENSITIVE and non-EXTRACTABLE set and only ENCRYPT/DECRYPT allowed. Wrapping is AES-GCM
in the HSM with a random 96-bit IV; the stored form is IV || ciphertext || tag. The
signer only signs, so this is the one thing identity does with the HSM itself, through
the shared PKCS#11 session pool.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams

from signet.common.errors import Internal
from signet.common.pkcs11 import Pkcs11Pool

_IV_BYTES = 12
_TAG_BITS = 128


class Pkcs11KeyWrapper:
    """Wraps data keys with an AES-256 KEK that never leaves the token."""

    def __init__(self, pool: Pkcs11Pool, label: str) -> None:
        self._pool = pool
        self._label = label
        self._lock = threading.Lock()
        self._ensure_kek()

    @property
    def label(self) -> str:
        """Token label of the key-encryption key."""
        return self._label

    def _find(self, session: Any) -> Any | None:
        found = list(
            session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.LABEL: self._label,
                    Attribute.KEY_TYPE: KeyType.AES,
                }
            )
        )
        return found[0] if found else None

    def _ensure_kek(self) -> None:
        with self._lock, self._pool.session() as session:
            if self._find(session) is not None:
                return
            session.generate_key(
                KeyType.AES,
                256,
                label=self._label,
                store=True,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                },
            )

    def wrap(self, key: bytes) -> bytes:
        """AES-GCM encrypt ``key`` inside the HSM."""
        iv = os.urandom(_IV_BYTES)

        def encrypt(session: Any) -> bytes:
            kek = self._find(session)
            if kek is None:
                raise Internal("personal data key-encryption key is missing")
            params = GCMParams(iv, self._label.encode(), _TAG_BITS)
            return bytes(kek.encrypt(key, mechanism=Mechanism.AES_GCM, mechanism_param=params))

        return iv + self._pool.run(encrypt)

    def unwrap(self, wrapped: bytes) -> bytes:
        """AES-GCM decrypt a wrapped key inside the HSM."""
        iv, body = wrapped[:_IV_BYTES], wrapped[_IV_BYTES:]

        def decrypt(session: Any) -> bytes:
            kek = self._find(session)
            if kek is None:
                raise Internal("personal data key-encryption key is missing")
            params = GCMParams(iv, self._label.encode(), _TAG_BITS)
            try:
                return bytes(kek.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=params))
            # SoftHSM reports a failed GCM tag as a general error.
            except (p11e.EncryptedDataInvalid, p11e.GeneralError) as err:
                raise Internal("personal data key could not be unwrapped") from err

        return self._pool.run(decrypt)
