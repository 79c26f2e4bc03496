"""The key tables and helpers shared by every backend, and PKCS#11 error translation."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto.algos import DigestInfo
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from pkcs11 import exceptions as p11e

from signet.common.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from signet.common.keys import (
    CKM_SM2_KEY_PAIR_GEN,
    CKM_SM2_SIGN_NO_DER,
    HASH_SPECS,
    HashAlgorithm,
    KeyAlgorithm,
    SignatureScheme,
    algorithms_for_mechanisms,
    der_encode_ecdsa,
    digest_info,
    prepare_signature,
    validate_key_id,
)
from signet.common.pkcs11 import translate_error

SOFTHSM_LIKE = {0x0, 0x1, 0xD, 0x1040, 0x1041, 0x1055, 0x1057}


@pytest.mark.parametrize(
    "hash_alg", [HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512]
)
def test_digest_info_is_the_der_structure_rsa_pkcs1_signs(hash_alg: HashAlgorithm) -> None:
    digest = hashlib.new(hash_alg.lower(), b"x").digest()
    expected = DigestInfo(
        {"digest_algorithm": {"algorithm": hash_alg.lower()}, "digest": digest}
    ).dump()
    assert digest_info(hash_alg, digest) == expected
    assert HASH_SPECS[hash_alg].digest_size == len(digest)


def test_der_encode_ecdsa_keeps_r_and_s() -> None:
    r, s = 2**255 + 7, 12345
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert decode_dss_signature(der_encode_ecdsa(raw)) == (r, s)


def test_der_encode_ecdsa_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="halves"):
        der_encode_ecdsa(bytes(63))


def test_sm2_is_offered_only_when_the_module_lists_its_mechanisms() -> None:
    assert KeyAlgorithm.SM2 not in algorithms_for_mechanisms(SOFTHSM_LIKE)
    with_sm2 = SOFTHSM_LIKE | {CKM_SM2_KEY_PAIR_GEN, CKM_SM2_SIGN_NO_DER}
    assert KeyAlgorithm.SM2 in algorithms_for_mechanisms(with_sm2)
    assert algorithms_for_mechanisms(SOFTHSM_LIKE) == frozenset(KeyAlgorithm) - {KeyAlgorithm.SM2}


def test_no_eddsa_mechanism_means_no_ed25519() -> None:
    assert KeyAlgorithm.ED25519 not in algorithms_for_mechanisms(SOFTHSM_LIKE - {0x1057})


def test_pkcs1_request_feeds_digest_info_and_pss_uses_hash_length_salt() -> None:
    digest = hashlib.sha384(b"x").digest()
    pkcs1 = prepare_signature(
        KeyAlgorithm.RSA_3072, SignatureScheme.RSA_PKCS1V15, HashAlgorithm.SHA384, digest
    )
    assert pkcs1.payload == digest_info(HashAlgorithm.SHA384, digest)
    pss = prepare_signature(
        KeyAlgorithm.RSA_3072, SignatureScheme.RSA_PSS, HashAlgorithm.SHA384, digest
    )
    assert pss.payload == digest
    assert pss.mechanism.pss_params == (0x260, 0x3, 48)


def test_ed25519_accepts_message_of_any_length() -> None:
    request = prepare_signature(KeyAlgorithm.ED25519, SignatureScheme.ED25519, None, b"a" * 1000)
    assert request.payload == b"a" * 1000


@pytest.mark.parametrize("key_id", ["k1", "tenant:42.key-1_a", "A" * 128])
def test_valid_key_ids_pass(key_id: str) -> None:
    validate_key_id(key_id)


@pytest.mark.parametrize("key_id", ["", " ", "a/b", "A" * 129, ".hidden"])
def test_invalid_key_ids_are_invalid_argument(key_id: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_key_id(key_id)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (p11e.NoSuchKey("No key matching {'label': 'secret-label'}"), NotFound),
        (p11e.KeyHandleInvalid(), NotFound),
        (p11e.AttributeSensitive(), PermissionDenied),
        (p11e.MechanismInvalid(), FailedPrecondition),
        (p11e.PKCS11Error("Unmapped error code 0x68"), FailedPrecondition),
        (p11e.DataLenRange(), InvalidArgument),
        (p11e.PinIncorrect(), Internal),
        (p11e.DeviceRemoved(), Unavailable),
        (p11e.SessionHandleInvalid(), Unavailable),
        (p11e.UserNotLoggedIn(), Unavailable),
        (p11e.PKCS11Error("Unmapped error code 0x999"), Internal),
    ],
)
def test_pkcs11_errors_translate_to_safe_service_errors(
    error: Exception, expected: type[Exception]
) -> None:
    translated = translate_error(error)
    assert type(translated) is expected
    assert "secret-label" not in translated.message
    assert str(error) not in translated.message or not str(error)
