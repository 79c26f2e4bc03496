"""The evidence package format, shared by the exporter and the offline verifier.

A package is a zip holding:

* ``manifest.json``: what the package proves (format below), with the SHA-256 of every
  other file;
* ``manifest.sig``: the log key's ECDSA signature over :func:`manifest_digest`, so no
  entry, certificate or token can be removed or changed without the verifier noticing;
* ``manifest.tst`` (when the service has a TSA): an RFC 3161 token over the same digest;
* ``entries/<leaf index>.bin``: each log entry's exact leaf bytes (the event envelope);
* ``certificates/``, ``ca/``, ``timestamps/``: DER certificates and timestamp tokens;
* ``report.html``: the human-readable report.
"""

from __future__ import annotations

import hashlib

FORMAT = "signet-evidence-package/1"
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
MANIFEST_TIMESTAMP = "manifest.tst"
REPORT = "report.html"
UNLISTED = frozenset({MANIFEST, MANIFEST_SIGNATURE, MANIFEST_TIMESTAMP})

_DOMAIN = b"signet-evidence-package-manifest/1\x00"

SIGNATURE_CREATED = "signet.events.v1.SignatureCreated"
CERTIFICATE_ISSUED = "signet.events.v1.CertificateIssued"
CERTIFICATE_RENEWED = "signet.events.v1.CertificateRenewed"
CERTIFICATE_REVOKED = "signet.events.v1.CertificateRevoked"
WILLINGNESS_CONFIRMED = "signet.events.v1.WillingnessConfirmed"
AUTO_SIGN_GRANT_ISSUED = "signet.events.v1.AutoSignGrantIssued"
REAL_NAME_VERIFIED = "signet.events.v1.RealNameVerified"


def manifest_digest(manifest_bytes: bytes) -> bytes:
    """The digest the log key signs for a manifest (domain-separated from tree heads)."""
    return hashlib.sha256(_DOMAIN + manifest_bytes).digest()


def entry_file(leaf_index: int) -> str:
    """The zip path of one entry's leaf bytes."""
    return f"entries/{leaf_index:012d}.bin"
