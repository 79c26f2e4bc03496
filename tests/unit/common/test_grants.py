"""Signing grants: compact JWS ES256, verified for signature, key id, form and time."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from signet.common.errors import InvalidArgument, PermissionDenied
from signet.common.grants import GrantClaims, encode_grant, verify_grant

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def _sign_with(key: ec.EllipticCurvePrivateKey):  # type: ignore[no-untyped-def]
    return lambda digest: key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def _claims(**overrides: object) -> GrantClaims:
    values: dict[str, object] = dict(
        grant_id="g-1",
        tenant="t1",
        account="a1",
        key_id="k1",
        digests=(b"\x01" * 32, b"\x02" * 32),
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
    )
    values.update(overrides)
    return GrantClaims(**values)  # type: ignore[arg-type]


def test_a_grant_round_trips() -> None:
    token = encode_grant(_claims(), "grant-key-1", _sign_with(KEY))
    claims = verify_grant(token, {"grant-key-1": KEY.public_key()}, now=NOW)
    assert claims == _claims()


def test_a_grant_signed_by_another_key_is_denied() -> None:
    token = encode_grant(_claims(), "grant-key-1", _sign_with(OTHER))
    with pytest.raises(PermissionDenied, match="signature is invalid"):
        verify_grant(token, {"grant-key-1": KEY.public_key()}, now=NOW)


def test_an_unknown_kid_is_denied() -> None:
    token = encode_grant(_claims(), "rotated-away", _sign_with(KEY))
    with pytest.raises(PermissionDenied, match="unknown key"):
        verify_grant(token, {"grant-key-1": KEY.public_key()}, now=NOW)


def test_an_expired_grant_is_denied() -> None:
    token = encode_grant(_claims(), "k", _sign_with(KEY))
    with pytest.raises(PermissionDenied, match="expired"):
        verify_grant(token, {"k": KEY.public_key()}, now=NOW + timedelta(minutes=6))


def test_a_changed_claim_breaks_the_signature() -> None:
    header, payload, sig = encode_grant(_claims(), "k", _sign_with(KEY)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(PermissionDenied, match="signature is invalid"):
        verify_grant(f"{header}.{forged}.{sig}", {"k": KEY.public_key()}, now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!.??.**"])
def test_malformed_grants_are_rejected(token: str) -> None:
    with pytest.raises((InvalidArgument, PermissionDenied)):
        verify_grant(token, {"k": KEY.public_key()}, now=NOW)


def test_alg_none_is_denied() -> None:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = b64({"alg": "none", "typ": "signet-grant+jwt", "kid": "k"}) + "." + b64({}) + "."
    with pytest.raises(PermissionDenied, match="unexpected algorithm"):
        verify_grant(token, {"k": KEY.public_key()}, now=NOW)
