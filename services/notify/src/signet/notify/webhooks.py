"""Webhook signatures: how notify signs a delivery and how a receiver verifies it.

Every delivery is a POST of a JSON body with these headers:

``Signet-Delivery-Id``
    The notification id; the same on every retry, so a receiver can drop duplicates.
``Signet-Timestamp``
    Unix seconds when this attempt was signed.
``Signet-Signature``
    ``v1=<hex>`` — HMAC-SHA256 under the endpoint's secret of
    ``<timestamp> + "." + <raw body bytes>``. While a rotated secret is in its grace period
    the header carries one ``v1=`` entry per valid secret, comma-separated.

A receiver recomputes the HMAC over the raw body it received (before parsing the JSON),
compares it in constant time with each ``v1`` entry, and rejects timestamps further than
five minutes from its clock (replays). :func:`verify` does exactly that; it depends on the
standard library only, so receivers may copy it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

HEADER_DELIVERY_ID = "Signet-Delivery-Id"
HEADER_TIMESTAMP = "Signet-Timestamp"
HEADER_SIGNATURE = "Signet-Signature"
HEADER_EVENT_TYPE = "Signet-Event-Type"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """The delivery is not authentic (bad or missing signature, stale timestamp)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    """The ``Signet-Signature`` value: one ``v1=`` entry per secret."""
    return ",".join(f"{SCHEME}={sign(secret, timestamp, body)}" for secret in secrets)


def signed_headers(
    secrets: Iterable[str], delivery_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """Every header notify adds to a delivery."""
    timestamp = int(time.time() if now is None else now)
    return {
        HEADER_DELIVERY_ID: delivery_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: signature_header(secrets, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    raise WebhookVerificationError(f"missing {name} header")


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a received delivery; returns its delivery id or raises WebhookVerificationError.

    ``body`` must be the raw bytes received; ``headers`` the request headers (any case).
    """
    raw_timestamp = _header(headers, HEADER_TIMESTAMP)
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("malformed timestamp") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookVerificationError("timestamp outside the tolerance")
    expected = sign(secret, timestamp, body)
    matched = False
    for entry in _header(headers, HEADER_SIGNATURE).split(","):
        scheme, _, value = entry.strip().partition("=")
        if scheme == SCHEME and hmac.compare_digest(value, expected):
            matched = True
    if not matched:
        raise WebhookVerificationError("no signature matches")
    return _header(headers, HEADER_DELIVERY_ID)
