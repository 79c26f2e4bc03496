"""One suite for every KeyBackend: the memory backend and the PKCS#11 backend on SoftHSM.

Each signature is verified with ``cryptography`` against the SPKI the backend returned,
so a wrong format (raw r||s instead of DER, wrong PSS salt, missing DigestInfo) fails.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key

from signet.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from signet.common.keys import (
    KEY_SPECS,
    HashAlgorithm,
    KeyAlgorithm,
    KeyBackend,
    SignatureScheme,
)
from signet.common.pkcs11 import Pkcs11KeyBackend
from signet.common.testing.memory_keys import MemoryKeyBackend

SHA2 = (HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512)
ALGORITHMS = [a for a in KeyAlgorithm if a is not KeyAlgorithm.SM2]
CASES = [
    (alg, scheme, hash_alg)
    for alg in ALGORITHMS
    for scheme in sorted(KEY_SPECS[alg].schemes)
    for hash_alg in ((None,) if scheme is SignatureScheme.ED25519 else SHA2)
]
_HASHES: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA256: hashes.SHA256,
    HashAlgorithm.SHA384: hashes.SHA384,
    HashAlgorithm.SHA512: hashes.SHA512,
}


@pytest.fixture(
    scope="module",
    params=["memory", pytest.param("pkcs11", marks=pytest.mark.softhsm)],
)
def backend(request: pytest.FixtureRequest) -> KeyBackend:
    if request.param == "memory":
        return MemoryKeyBackend()
    return Pkcs11KeyBackend(request.getfixturevalue("pkcs11_pool"))


@pytest.fixture(scope="module")
def keys(backend: KeyBackend) -> Iterator[dict[KeyAlgorithm, tuple[str, bytes]]]:
    """One key per algorithm, generated once per backend and destroyed afterwards."""
    made: dict[KeyAlgorithm, tuple[str, bytes]] = {}
    for alg in ALGORITHMS:
        key_id = f"contract-{alg.lower()}-{uuid.uuid4().hex[:8]}"
        made[alg] = (key_id, backend.generate(key_id, alg))
    yield made
    for key_id, _ in made.values():
        if backend.exists(key_id):
            backend.destroy(key_id)


def _new_id() -> str:
    return f"contract-{uuid.uuid4().hex}"


def _verify(
    spki: bytes,
    scheme: SignatureScheme,
    hash_alg: HashAlgorithm | None,
    data: bytes,
    signature: bytes,
) -> None:
    public = load_der_public_key(spki)
    if scheme is SignatureScheme.ED25519:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(signature, data)
        return
    assert hash_alg is not None
    prehashed = utils.Prehashed(_HASHES[hash_alg]())
    if scheme is SignatureScheme.ECDSA:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, data, ec.ECDSA(prehashed))
    elif scheme is SignatureScheme.RSA_PSS:
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(_HASHES[hash_alg]()), salt_length=hash_alg.digest_size)
        public.verify(signature, data, pss, prehashed)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), prehashed)


@pytest.mark.parametrize(
    ("algorithm", "scheme", "hash_alg"),
    CASES,
    ids=[f"{a}-{s}-{h}" for a, s, h in CASES],
)
def test_signature_verifies_with_returned_public_key(
    backend: KeyBackend,
    keys: dict[KeyAlgorithm, tuple[str, bytes]],
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    hash_alg: HashAlgorithm | None,
) -> None:
    key_id, spki = keys[algorithm]
    message = f"contract {algorithm} {scheme} {hash_alg}".encode()
    data = message if hash_alg is None else hashlib.new(hash_alg.lower(), message).digest()
    signature = backend.sign(key_id, scheme, hash_alg, data)
    _verify(spki, scheme, hash_alg, data, signature)
    with pytest.raises(InvalidSignature):
        _verify(spki, scheme, hash_alg, bytes(len(data)), signature)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_public_key_and_algorithm_match_generate(
    backend: KeyBackend, keys: dict[KeyAlgorithm, tuple[str, bytes]], algorithm: KeyAlgorithm
) -> None:
    key_id, spki = keys[algorithm]
    assert backend.public_key(key_id) == spki
    assert backend.algorithm(key_id) is algorithm
    assert backend.exists(key_id)


def test_every_algorithm_but_sm2_is_supported(backend: KeyBackend) -> None:
    assert backend.supported_algorithms() == frozenset(ALGORITHMS)


def test_generating_sm2_where_unsupported_is_failed_precondition(backend: KeyBackend) -> None:
    with pytest.raises(FailedPrecondition):
        backend.generate(_new_id(), KeyAlgorithm.SM2)


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048])
@pytest.mark.parametrize("length_delta", [-1, 1])
def test_wrong_digest_length_is_invalid_argument(
    backend: KeyBackend,
    keys: dict[KeyAlgorithm, tuple[str, bytes]],
    algorithm: KeyAlgorithm,
    length_delta: int,
) -> None:
    key_id, _ = keys[algorithm]
    scheme = sorted(KEY_SPECS[algorithm].schemes)[0]
    with pytest.raises(InvalidArgument):
        backend.sign(key_id, scheme, HashAlgorithm.SHA256, bytes(32 + length_delta))


@pytest.mark.parametrize(
    ("algorithm", "scheme", "hash_alg"),
    [
        (KeyAlgorithm.EC_P256, SignatureScheme.RSA_PSS, HashAlgorithm.SHA256),
        (KeyAlgorithm.RSA_2048, SignatureScheme.ECDSA, HashAlgorithm.SHA256),
        (KeyAlgorithm.RSA_2048, SignatureScheme.ED25519, None),
        (KeyAlgorithm.ED25519, SignatureScheme.ECDSA, HashAlgorithm.SHA256),
        (KeyAlgorithm.ED25519, SignatureScheme.ED25519, HashAlgorithm.SHA256),
        (KeyAlgorithm.EC_P256, SignatureScheme.ECDSA, None),
        (KeyAlgorithm.EC_P256, SignatureScheme.ECDSA, HashAlgorithm.SM3),
    ],
)
def test_scheme_or_hash_not_valid_for_key_is_invalid_argument(
    backend: KeyBackend,
    keys: dict[KeyAlgorithm, tuple[str, bytes]],
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    hash_alg: HashAlgorithm | None,
) -> None:
    key_id, _ = keys[algorithm]
    with pytest.raises(InvalidArgument):
        backend.sign(key_id, scheme, hash_alg, bytes(32))


def test_unknown_key_is_not_found(backend: KeyBackend) -> None:
    key_id = _new_id()
    assert not backend.exists(key_id)
    with pytest.raises(NotFound):
        backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, bytes(32))
    with pytest.raises(NotFound):
        backend.public_key(key_id)
    with pytest.raises(NotFound):
        backend.destroy(key_id)


def test_destroy_then_sign_is_not_found(backend: KeyBackend) -> None:
    key_id = _new_id()
    backend.generate(key_id, KeyAlgorithm.EC_P256)
    digest = hashlib.sha256(b"before destroy").digest()
    backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, digest)
    backend.destroy(key_id)
    assert not backend.exists(key_id)
    with pytest.raises(NotFound):
        backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, digest)
    with pytest.raises(NotFound):
        backend.public_key(key_id)


def test_regenerated_key_id_signs_with_the_new_key(backend: KeyBackend) -> None:
    key_id = _new_id()
    backend.generate(key_id, KeyAlgorithm.EC_P256)
    digest = hashlib.sha256(b"regenerate").digest()
    backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, digest)
    backend.destroy(key_id)
    spki = backend.generate(key_id, KeyAlgorithm.EC_P384)
    try:
        signature = backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, digest)
        _verify(spki, SignatureScheme.ECDSA, HashAlgorithm.SHA256, digest, signature)
    finally:
        backend.destroy(key_id)


def test_generating_an_existing_key_is_already_exists(
    backend: KeyBackend, keys: dict[KeyAlgorithm, tuple[str, bytes]]
) -> None:
    key_id, spki = keys[KeyAlgorithm.EC_P256]
    with pytest.raises(AlreadyExists):
        backend.generate(key_id, KeyAlgorithm.EC_P256)
    assert backend.public_key(key_id) == spki


@pytest.mark.parametrize("key_id", ["", "has space", "x" * 129, "ключ", "-leading-dash"])
def test_malformed_key_id_is_invalid_argument(backend: KeyBackend, key_id: str) -> None:
    with pytest.raises(InvalidArgument):
        backend.generate(key_id, KeyAlgorithm.EC_P256)
    with pytest.raises(InvalidArgument):
        backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, bytes(32))
