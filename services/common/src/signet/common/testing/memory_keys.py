"""An in-memory :class:`signet.common.keys.KeyBackend` for unit tests; never for production.

It produces the same formats and raises the same errors as the PKCS#11 backend (the
contract suite runs against both), so domain code tested with it behaves the same on a
real HSM. SM2 is not offered: the ``cryptography`` library has no SM2 signing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from signet.common.errors import AlreadyExists, NotFound, ServiceError
from signet.common.keys import (
    KEY_SPECS,
    HashAlgorithm,
    KeyAlgorithm,
    KeyFamily,
    SignatureScheme,
    prepare_signature,
    unsupported_algorithm,
    validate_key_id,
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_HASHES: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA256: hashes.SHA256,
    HashAlgorithm.SHA384: hashes.SHA384,
    HashAlgorithm.SHA512: hashes.SHA512,
}
_SUPPORTED = frozenset(a for a in KeyAlgorithm if a is not KeyAlgorithm.SM2)


def _new_key(algorithm: KeyAlgorithm) -> PrivateKey:
    spec = KEY_SPECS[algorithm]
    if spec.family is KeyFamily.RSA and spec.rsa_bits is not None:
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.rsa_bits)
    if spec.family is KeyFamily.EDWARDS:
        return ed25519.Ed25519PrivateKey.generate()
    curve = ec.SECP256R1() if algorithm is KeyAlgorithm.EC_P256 else ec.SECP384R1()
    return ec.generate_private_key(curve)


class MemoryKeyBackend:
    """Keys in a dict, signatures by ``cryptography``; thread-safe."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[KeyAlgorithm, PrivateKey]] = {}
        self._lock = threading.Lock()

    def supported_algorithms(self) -> frozenset[KeyAlgorithm]:
        """Everything but SM2."""
        return _SUPPORTED

    def _get(self, key_id: str) -> tuple[KeyAlgorithm, PrivateKey]:
        validate_key_id(key_id)
        with self._lock:
            entry = self._keys.get(key_id)
        if entry is None:
            raise NotFound("key not found")
        return entry

    def generate(self, key_id: str, algorithm: KeyAlgorithm) -> bytes:
        """Create a key pair; return the public key as SPKI DER."""
        validate_key_id(key_id)
        if algorithm not in _SUPPORTED:
            raise unsupported_algorithm()
        key = _new_key(algorithm)
        with self._lock:
            if key_id in self._keys:
                raise AlreadyExists("key already exists")
            self._keys[key_id] = (algorithm, key)
        return self._spki(key)

    @staticmethod
    def _spki(key: PrivateKey) -> bytes:
        return key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_key(self, key_id: str) -> bytes:
        """The public key of ``key_id`` as SPKI DER."""
        return self._spki(self._get(key_id)[1])

    def algorithm(self, key_id: str) -> KeyAlgorithm:
        """The algorithm of an existing key."""
        return self._get(key_id)[0]

    def sign(
        self,
        key_id: str,
        scheme: SignatureScheme,
        hash_alg: HashAlgorithm | None,
        data: bytes,
    ) -> bytes:
        """Sign like the PKCS#11 backend: same validation, same output format."""
        algorithm, key = self._get(key_id)
        prepare_signature(algorithm, scheme, hash_alg, data)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if hash_alg is None:
            raise unsupported_algorithm()
        prehashed = utils.Prehashed(_HASHES[hash_alg]())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(prehashed))
        if scheme is SignatureScheme.RSA_PSS:
            pss = padding.PSS(
                mgf=padding.MGF1(_HASHES[hash_alg]()), salt_length=hash_alg.digest_size
            )
            return key.sign(data, pss, prehashed)
        return key.sign(data, padding.PKCS1v15(), prehashed)

    def sign_many(
        self,
        key_id: str,
        scheme: SignatureScheme,
        hash_alg: HashAlgorithm | None,
        items: Sequence[bytes],
    ) -> list[bytes | ServiceError]:
        """Sign each item; an item's own error (say, its length) is its result."""
        self._get(key_id)
        out: list[bytes | ServiceError] = []
        for data in items:
            try:
                out.append(self.sign(key_id, scheme, hash_alg, data))
            except ServiceError as err:
                out.append(err)
        return out

    def destroy(self, key_id: str) -> None:
        """Forget the key; unknown keys are NotFound."""
        validate_key_id(key_id)
        with self._lock:
            if self._keys.pop(key_id, None) is None:
                raise NotFound("key not found")

    def exists(self, key_id: str) -> bool:
        """Whether ``key_id`` is held."""
        validate_key_id(key_id)
        with self._lock:
            return key_id in self._keys
