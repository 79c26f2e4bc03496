"""The webhook signature recipe, as a receiver applies it."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from signet.notify import webhooks

SECRET = "whsec_test"
BODY = b'{"id":"e-1","type":"signet.events.v1.CertificateIssued"}'


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    headers = webhooks.signed_headers([SECRET], "n-1", BODY, now=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers[webhooks.HEADER_SIGNATURE] == f"v1={expected}"
    assert headers[webhooks.HEADER_TIMESTAMP] == "1700000000"
    assert headers[webhooks.HEADER_DELIVERY_ID] == "n-1"


def test_valid_delivery_verifies_and_returns_its_id() -> None:
    headers = webhooks.signed_headers([SECRET], "n-1", BODY, now=1000)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert webhooks.verify(SECRET, BODY, lowered, now=1010) == "n-1"


@pytest.mark.parametrize(
    ("secret", "body", "now", "message"),
    [
        (SECRET, BODY + b" ", 1000, "no signature matches"),
        ("whsec_other", BODY, 1000, "no signature matches"),
        (SECRET, BODY, 1000 + 301, "outside the tolerance"),
        (SECRET, BODY, 1000 - 301, "outside the tolerance"),
    ],
)
def test_changed_body_wrong_secret_or_stale_timestamp_fail(
    secret: str, body: bytes, now: int, message: str
) -> None:
    headers = webhooks.signed_headers([SECRET], "n-1", BODY, now=1000)
    with pytest.raises(webhooks.WebhookVerificationError, match=message):
        webhooks.verify(secret, body, headers, now=now)


def test_both_secrets_verify_during_a_rotation() -> None:
    headers = webhooks.signed_headers(["whsec_new", "whsec_old"], "n-1", BODY, now=1000)
    assert headers[webhooks.HEADER_SIGNATURE].count("v1=") == 2
    for secret in ("whsec_new", "whsec_old"):
        assert webhooks.verify(secret, BODY, headers, now=1000) == "n-1"


def test_missing_or_malformed_headers_fail() -> None:
    with pytest.raises(webhooks.WebhookVerificationError, match="missing"):
        webhooks.verify(SECRET, BODY, {}, now=1000)
    headers = webhooks.signed_headers([SECRET], "n-1", BODY, now=1000)
    headers[webhooks.HEADER_TIMESTAMP] = "soon"
    with pytest.raises(webhooks.WebhookVerificationError, match="malformed"):
        webhooks.verify(SECRET, BODY, headers, now=1000)
