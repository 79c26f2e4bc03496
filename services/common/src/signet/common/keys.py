"""Key algorithms, signature schemes and the key-backend interface, shared by every backend.

What a backend must do for a given (algorithm, scheme, hash) is written down here as data
(:data:`KEY_SPECS`, :data:`HASH_SPECS`, :data:`SIGNING_MECHANISMS`), so the PKCS#11
backend, the memory backend and the tests all read the same table instead of each
carrying its own ``if`` ladder. The output format is fixed for every backend:

* ECDSA and SM2: DER ``Dss-Sig-Value`` (``SEQUENCE {r, s}``), as X.509 and CMS expect; HSMs
  return raw ``r || s``, which :func:`der_encode_ecdsa` converts.
* RSA-PSS: MGF1 with the same hash, salt length = hash length.
* RSA PKCS#1 v1.5: over ``DigestInfo(hash, digest)``; :func:`digest_info` builds it.
* Ed25519: pure EdDSA over the message itself (``hash_alg`` must be ``None`` or SHA-512).

For every scheme but Ed25519 the ``data`` passed to :meth:`KeyBackend.sign` is the digest,
because documents never reach the signer, only their hashes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signet.common.errors import FailedPrecondition, InvalidArgument, ServiceError

# PKCS#11 constants (CKK_*, CKM_*, CKG_*) as plain ints: the table is data that also has to
# describe vendor mechanisms python-pkcs11 does not name.
CKK_RSA = 0x00000000
CKK_EC = 0x00000003
CKK_EC_EDWARDS = 0x00000040
CKM_RSA_PKCS_KEY_PAIR_GEN = 0x00000000
CKM_RSA_PKCS = 0x00000001
CKM_RSA_PKCS_PSS = 0x0000000D
CKM_SHA256 = 0x00000250
CKM_SHA384 = 0x00000260
CKM_SHA512 = 0x00000270
CKM_EC_KEY_PAIR_GEN = 0x00001040
CKM_ECDSA = 0x00001041
CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x00001055
CKM_EDDSA = 0x00001057
CKG_MGF1_SHA256 = 0x00000002
CKG_MGF1_SHA384 = 0x00000003
CKG_MGF1_SHA512 = 0x00000004
# SM2 has no standard PKCS#11 mechanism; these are the vendor-defined values most Chinese
# HSM modules use (CKM_VENDOR_DEFINED + 0x8000 + n). Adjust here for a module that differs.
CKM_SM2_KEY_PAIR_GEN = 0x80008001
CKM_SM2_SIGN_NO_DER = 0x80008105
CKM_SM3 = 0x80000005

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class KeyAlgorithm(StrEnum):
    """Key types Signet can create; what the proto's key-algorithm enum maps to."""

    EC_P256 = "EC_P256"
    EC_P384 = "EC_P384"
    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"
    ED25519 = "ED25519"
    SM2 = "SM2"


class HashAlgorithm(StrEnum):
    """Digest algorithms a caller may have hashed with before asking for a signature."""

    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"
    SM3 = "SM3"

    @property
    def digest_size(self) -> int:
        """Length of a digest in bytes."""
        return HASH_SPECS[self].digest_size


class SignatureScheme(StrEnum):
    """How a signature is made; each key algorithm allows some schemes (see KEY_SPECS)."""

    ECDSA = "ECDSA"
    RSA_PSS = "RSA_PSS"
    RSA_PKCS1V15 = "RSA_PKCS1V15"
    ED25519 = "ED25519"
    SM2 = "SM2"


class KeyFamily(Enum):
    """Broad key type; decides how the public key is read and encoded."""

    EC = "ec"
    RSA = "rsa"
    EDWARDS = "edwards"
    SM2 = "sm2"


class SignInput(Enum):
    """What the HSM mechanism is fed."""

    DIGEST = "digest"
    DIGEST_INFO = "digest_info"
    MESSAGE = "message"


class SignOutput(Enum):
    """How the mechanism's output becomes Signet's signature format."""

    AS_IS = "as_is"
    RAW_RS_TO_DER = "raw_rs_to_der"


@dataclass(frozen=True)
class KeySpec:
    """How one key algorithm is generated and which schemes it may sign with."""

    algorithm: KeyAlgorithm
    family: KeyFamily
    key_type: int
    generate_mechanism: int
    schemes: frozenset[SignatureScheme]
    curve_oid: str | None = None
    rsa_bits: int | None = None


@dataclass(frozen=True)
class HashSpec:
    """Facts about one digest algorithm needed to sign a digest made with it."""

    digest_size: int
    oid: str
    digest_mechanism: int
    mgf: int | None
    digest_info_prefix: bytes | None


@dataclass(frozen=True)
class SigningMechanism:
    """The PKCS#11 mechanism (and parameters) for one (scheme, hash) pair."""

    mechanism: int
    sign_input: SignInput
    output: SignOutput
    pss_params: tuple[int, int, int] | None = None


KEY_SPECS: Mapping[KeyAlgorithm, KeySpec] = {
    KeyAlgorithm.EC_P256: KeySpec(
        KeyAlgorithm.EC_P256,
        KeyFamily.EC,
        CKK_EC,
        CKM_EC_KEY_PAIR_GEN,
        frozenset({SignatureScheme.ECDSA}),
        curve_oid="1.2.840.10045.3.1.7",
    ),
    KeyAlgorithm.EC_P384: KeySpec(
        KeyAlgorithm.EC_P384,
        KeyFamily.EC,
        CKK_EC,
        CKM_EC_KEY_PAIR_GEN,
        frozenset({SignatureScheme.ECDSA}),
        curve_oid="1.3.132.0.34",
    ),
    **{
        alg: KeySpec(
            alg,
            KeyFamily.RSA,
            CKK_RSA,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            frozenset({SignatureScheme.RSA_PSS, SignatureScheme.RSA_PKCS1V15}),
            rsa_bits=bits,
        )
        for alg, bits in (
            (KeyAlgorithm.RSA_2048, 2048),
            (KeyAlgorithm.RSA_3072, 3072),
            (KeyAlgorithm.RSA_4096, 4096),
        )
    },
    KeyAlgorithm.ED25519: KeySpec(
        KeyAlgorithm.ED25519,
        KeyFamily.EDWARDS,
        CKK_EC_EDWARDS,
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        frozenset({SignatureScheme.ED25519}),
        curve_oid="1.3.101.112",
    ),
    KeyAlgorithm.SM2: KeySpec(
        KeyAlgorithm.SM2,
        KeyFamily.SM2,
        CKK_EC,
        CKM_SM2_KEY_PAIR_GEN,
        frozenset({SignatureScheme.SM2}),
        curve_oid="1.2.156.10197.1.301",
    ),
}

HASH_SPECS: Mapping[HashAlgorithm, HashSpec] = {
    HashAlgorithm.SHA256: HashSpec(
        32,
        "2.16.840.1.101.3.4.2.1",
        CKM_SHA256,
        CKG_MGF1_SHA256,
        bytes.fromhex("3031300d060960864801650304020105000420"),
    ),
    HashAlgorithm.SHA384: HashSpec(
        48,
        "2.16.840.1.101.3.4.2.2",
        CKM_SHA384,
        CKG_MGF1_SHA384,
        bytes.fromhex("3041300d060960864801650304020205000430"),
    ),
    HashAlgorithm.SHA512: HashSpec(
        64,
        "2.16.840.1.101.3.4.2.3",
        CKM_SHA512,
        CKG_MGF1_SHA512,
        bytes.fromhex("3051300d060960864801650304020305000440"),
    ),
    HashAlgorithm.SM3: HashSpec(32, "1.2.156.10197.1.401", CKM_SM3, None, None),
}

_SHA2 = (HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512)

# (scheme, hash) -> mechanism. Ed25519 is keyed with hash None: it hashes internally.
SIGNING_MECHANISMS: Mapping[tuple[SignatureScheme, HashAlgorithm | None], SigningMechanism] = {
    **{
        (SignatureScheme.ECDSA, h): SigningMechanism(
            CKM_ECDSA, SignInput.DIGEST, SignOutput.RAW_RS_TO_DER
        )
        for h in _SHA2
    },
    **{
        (SignatureScheme.RSA_PSS, h): SigningMechanism(
            CKM_RSA_PKCS_PSS,
            SignInput.DIGEST,
            SignOutput.AS_IS,
            pss_params=(
                HASH_SPECS[h].digest_mechanism,
                HASH_SPECS[h].mgf or 0,
                HASH_SPECS[h].digest_size,
            ),
        )
        for h in _SHA2
    },
    **{
        (SignatureScheme.RSA_PKCS1V15, h): SigningMechanism(
            CKM_RSA_PKCS, SignInput.DIGEST_INFO, SignOutput.AS_IS
        )
        for h in _SHA2
    },
    (SignatureScheme.ED25519, None): SigningMechanism(
        CKM_EDDSA, SignInput.MESSAGE, SignOutput.AS_IS
    ),
    (SignatureScheme.SM2, HashAlgorithm.SM3): SigningMechanism(
        CKM_SM2_SIGN_NO_DER, SignInput.DIGEST, SignOutput.RAW_RS_TO_DER
    ),
}


@dataclass(frozen=True)
class SignRequest:
    """A validated sign request: the mechanism to use and the bytes to feed it."""

    mechanism: SigningMechanism
    payload: bytes


def validate_key_id(key_id: str) -> None:
    """Reject key ids that are not short printable tokens (they become CKA_ID and CKA_LABEL)."""
    if not isinstance(key_id, str) or KEY_ID_PATTERN.fullmatch(key_id) is None:
        raise InvalidArgument("key id must be 1-128 characters of [A-Za-z0-9._:-]")


def algorithms_for_mechanisms(mechanisms: Iterable[int]) -> frozenset[KeyAlgorithm]:
    """The key algorithms a module can generate and sign with, from its mechanism list."""
    available = set(mechanisms)
    result: set[KeyAlgorithm] = set()
    for spec in KEY_SPECS.values():
        if spec.generate_mechanism not in available:
            continue
        signing = {
            m.mechanism for (scheme, _), m in SIGNING_MECHANISMS.items() if scheme in spec.schemes
        }
        if signing & available:
            result.add(spec.algorithm)
    return frozenset(result)


def digest_info(hash_alg: HashAlgorithm, digest: bytes) -> bytes:
    """DER ``DigestInfo`` for a digest, the input PKCS#1 v1.5 signs (RFC 8017 section 9.2)."""
    prefix = HASH_SPECS[hash_alg].digest_info_prefix
    if prefix is None:
        raise InvalidArgument("hash algorithm not usable with PKCS#1 v1.5")
    return prefix + digest


def der_encode_ecdsa(raw: bytes) -> bytes:
    """Turn a raw ``r || s`` signature (PKCS#11 format) into DER ``Dss-Sig-Value``."""
    if not raw or len(raw) % 2:
        raise ValueError("raw ECDSA signature must be two equal halves")
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


def prepare_signature(
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    hash_alg: HashAlgorithm | None,
    data: bytes,
) -> SignRequest:
    """Check a sign request against the key's algorithm and return what to feed the HSM.

    Both backends call this first, so they reject exactly the same requests with the
    same errors.
    """
    spec = KEY_SPECS[algorithm]
    if scheme not in spec.schemes:
        raise InvalidArgument("signature scheme not valid for this key")
    if scheme is SignatureScheme.ED25519:
        if hash_alg not in (None, HashAlgorithm.SHA512):
            raise InvalidArgument("Ed25519 signs the message; hash algorithm must be unset")
        hash_alg = None
    elif hash_alg is None:
        raise InvalidArgument("hash algorithm required for this signature scheme")
    mechanism = SIGNING_MECHANISMS.get((scheme, hash_alg))
    if mechanism is None:
        raise InvalidArgument("hash algorithm not valid for this signature scheme")
    if hash_alg is not None and len(data) != HASH_SPECS[hash_alg].digest_size:
        raise InvalidArgument("digest length does not match the hash algorithm")
    if mechanism.sign_input is SignInput.DIGEST_INFO and hash_alg is not None:
        payload = digest_info(hash_alg, data)
    else:
        payload = bytes(data)
    return SignRequest(mechanism, payload)


def finish_signature(request: SignRequest, output: bytes) -> bytes:
    """Convert a mechanism's output to Signet's signature format (see the module doc)."""
    if request.mechanism.output is SignOutput.RAW_RS_TO_DER:
        return der_encode_ecdsa(output)
    return output


def unsupported_algorithm() -> FailedPrecondition:
    """The error for an algorithm this key store cannot generate (e.g. SM2 on SoftHSM)."""
    return FailedPrecondition("key algorithm not supported by this key store")


@runtime_checkable
class KeyBackend(Protocol):
    """A store of private keys that never hands them out, only signatures.

    Implementations: ``Pkcs11KeyBackend`` (production, any PKCS#11 HSM) and
    ``MemoryKeyBackend`` (unit tests). Errors are :mod:`signet.common.errors`:
    unknown key -> NotFound, existing key -> AlreadyExists, bad request (scheme, hash,
    digest length, key id) -> InvalidArgument, algorithm not offered -> FailedPrecondition,
    HSM down -> Unavailable.
    """

    def supported_algorithms(self) -> frozenset[KeyAlgorithm]:
        """Algorithms :meth:`generate` accepts here."""
        ...

    def generate(self, key_id: str, algorithm: KeyAlgorithm) -> bytes:
        """Create a key pair inside the store; return the public key as SPKI DER."""
        ...

    def public_key(self, key_id: str) -> bytes:
        """The public key of ``key_id`` as SPKI DER."""
        ...

    def algorithm(self, key_id: str) -> KeyAlgorithm:
        """The algorithm of an existing key."""
        ...

    def sign(
        self,
        key_id: str,
        scheme: SignatureScheme,
        hash_alg: HashAlgorithm | None,
        data: bytes,
    ) -> bytes:
        """Sign ``data`` (a digest; the message for Ed25519) in Signet's signature format."""
        ...

    def sign_many(
        self,
        key_id: str,
        scheme: SignatureScheme,
        hash_alg: HashAlgorithm | None,
        items: Sequence[bytes],
    ) -> list[bytes | ServiceError]:
        """Sign each of ``items`` like :meth:`sign`; an item's own error is its result.

        Errors of the whole call (unknown key, HSM down) raise.
        """
        ...

    def destroy(self, key_id: str) -> None:
        """Delete the key pair; later use is NotFound. Unknown keys are NotFound."""
        ...

    def exists(self, key_id: str) -> bool:
        """Whether a private key ``key_id`` exists."""
        ...
