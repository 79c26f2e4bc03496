"""Signing grants: the single-use proof that a person meant to sign these exact digests.

Identity issues a grant after a willingness check; the signer accepts a subscriber
signature only with one. A grant is a compact JWS (RFC 7515) signed with ES256 (RFC 7518
section 3.4: raw r||s) by identity's grant key, which lives in the HSM. Its claims bind the
account, the tenant, the signing key, the exact digest(s), a short expiry and a unique id.

Both sides use this module, so the format is defined once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from signet.common.errors import InvalidArgument, PermissionDenied

ISSUER = "signet-identity"
GRANT_TYPE = "signet-grant+jwt"
_P256_BYTES = 32
_MAX_TOKEN_BYTES = 256 * 1024


@dataclass(frozen=True)
class GrantClaims:
    """What a grant allows: ``account`` of ``tenant`` may sign ``digests`` with ``key_id``."""

    grant_id: str
    tenant: str
    account: str
    key_id: str
    digests: tuple[bytes, ...]
    issued_at: datetime
    expires_at: datetime
    auto_sign_authorization: str = ""

    def to_json(self) -> dict[str, object]:
        """The JWT claim set."""
        claims: dict[str, object] = {
            "iss": ISSUER,
            "jti": self.grant_id,
            "tenant": self.tenant,
            "sub": self.account,
            "key": self.key_id,
            "digests": [_b64(d) for d in self.digests],
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
        }
        if self.auto_sign_authorization:
            claims["asa"] = self.auto_sign_authorization
        return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as err:
        raise InvalidArgument("signing grant is not a valid compact JWS") from err


def der_to_raw_p256(der_signature: bytes) -> bytes:
    """Convert an ECDSA DER signature to the fixed-width r||s form JWS uses."""
    r, s = decode_dss_signature(der_signature)
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def encode_grant(claims: GrantClaims, kid: str, sign_der: Callable[[bytes], bytes]) -> str:
    """Serialise and sign a grant. ``sign_der`` signs a SHA-256 DIGEST, returning DER ECDSA.

    The digest-taking callback lets the HSM sign (SoftHSM has no ECDSA-with-hash).
    """
    header = {"alg": "ES256", "typ": GRANT_TYPE, "kid": kid}
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64(json.dumps(claims.to_json(), separators=(",", ":")).encode())
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(signing_input.encode("ascii"))
    raw = der_to_raw_p256(sign_der(digest.finalize()))
    return signing_input + "." + _b64(raw)


def verify_grant(
    token: str,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    now: datetime | None = None,
    leeway_seconds: int = 5,
) -> GrantClaims:
    """Check a grant's form, signature (by a key in ``keys``, by kid) and expiry.

    Binding checks (digest, key, owner) and single use are the caller's: it knows the request.
    Every failure is PermissionDenied or InvalidArgument with a message safe to return.
    """
    if not token or len(token) > _MAX_TOKEN_BYTES:
        raise PermissionDenied("a signing grant is required")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidArgument("signing grant is not a valid compact JWS")
    try:
        header = json.loads(_unb64(parts[0]))
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidArgument("signing grant is not a valid compact JWS") from err
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise InvalidArgument("signing grant is not a valid compact JWS")
    if header.get("alg") != "ES256" or header.get("typ") != GRANT_TYPE:
        raise PermissionDenied("signing grant has an unexpected algorithm or type")
    key = keys.get(str(header.get("kid", "")))
    if key is None:
        raise PermissionDenied("signing grant was signed by an unknown key")
    raw = _unb64(parts[2])
    if len(raw) != 2 * _P256_BYTES:
        raise PermissionDenied("signing grant signature is invalid")
    der = encode_dss_signature(
        int.from_bytes(raw[:_P256_BYTES], "big"), int.from_bytes(raw[_P256_BYTES:], "big")
    )
    try:
        key.verify(der, (parts[0] + "." + parts[1]).encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as err:
        raise PermissionDenied("signing grant signature is invalid") from err
    claims = _claims_from_json(payload)
    current = now or datetime.now(UTC)
    if claims.expires_at.timestamp() + leeway_seconds < current.timestamp():
        raise PermissionDenied("signing grant has expired")
    if claims.issued_at.timestamp() - leeway_seconds > current.timestamp():
        raise PermissionDenied("signing grant is not valid yet")
    return claims


def _claims_from_json(payload: Mapping[str, object]) -> GrantClaims:
    try:
        if payload["iss"] != ISSUER:
            raise PermissionDenied("signing grant has an unexpected issuer")
        digests = payload["digests"]
        if not isinstance(digests, Sequence) or isinstance(digests, str) or not digests:
            raise InvalidArgument("signing grant names no digest")
        iat, exp = payload["iat"], payload["exp"]
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise InvalidArgument("signing grant has malformed times")
        return GrantClaims(
            grant_id=str(payload["jti"]),
            tenant=str(payload["tenant"]),
            account=str(payload["sub"]),
            key_id=str(payload["key"]),
            digests=tuple(_unb64(str(d)) for d in digests),
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC),
            auto_sign_authorization=str(payload.get("asa", "")),
        )
    except KeyError as err:
        raise InvalidArgument("signing grant lacks a required claim") from err
