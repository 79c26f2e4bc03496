"""The CA gateway's own metrics (beside the per-RPC ones every service has).

Low-cardinality labels only: profile, reason, CA id, status. The timestamps let alerts
fire before a CRL goes stale or a CA or responder certificate expires.
"""

from __future__ import annotations

from signet.common import metrics

CERTIFICATES_ISSUED = metrics.counter(
    "signet_ca_gateway_certificates_issued_total",
    "Certificates issued, by profile and how (issue, renew).",
    ["profile", "kind"],
)
REVOCATIONS = metrics.counter(
    "signet_ca_gateway_revocations_total",
    "Certificates revoked, by reason.",
    ["reason"],
)
CRLS_PUBLISHED = metrics.counter(
    "signet_ca_gateway_crls_published_total",
    "CRLs signed and published, by CA.",
    ["ca"],
)
CRL_NEXT_UPDATE = metrics.gauge(
    "signet_ca_gateway_crl_next_update_timestamp_seconds",
    "Next-update time of the newest CRL this process published, by CA (Unix seconds).",
    ["ca"],
)
OCSP_RESPONSES = metrics.counter(
    "signet_ca_gateway_ocsp_responses_total",
    "OCSP responses by response status (successful, malformed_request, try_later ...).",
    ["status"],
)
CERTIFICATE_NOT_AFTER = metrics.gauge(
    "signet_ca_gateway_ca_certificate_not_after_timestamp_seconds",
    "Expiry of the CA-side certificates in use (root, issuing CA, OCSP responder).",
    ["role"],
)
HTTP_REQUESTS = metrics.counter(
    "signet_ca_gateway_http_requests_total",
    "Relying-party HTTP requests by endpoint and HTTP status.",
    ["endpoint", "code"],
)
KEY_RETIREMENTS_PENDING = metrics.gauge(
    "signet_ca_gateway_key_retirements_pending",
    "Revoked certificates whose key the signer has not disabled yet (retried each round).",
)
