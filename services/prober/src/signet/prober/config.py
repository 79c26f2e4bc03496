"""Prober settings: ``SIGNET_PROBER_<FIELD>`` environment variables.

The prober is a client: of the common settings it uses the auth mode, its service token,
the TLS files (mtls) and the log level. A service whose ``<SVC>_TARGETS`` is empty is not
probed.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings


class ProberSettings(ServiceSettings):
    """Where the services are, how often to call them, where results go."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_PROBER_", extra="ignore", frozen=True)

    service_name: str = "prober"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9110, ge=0, le=65535)
    # One round a minute: the SLA counts minutes.
    interval_seconds: float = Field(default=60.0, ge=1, le=60)
    # Per call; a service's two calls (health, API) must fit in the minute.
    timeout_seconds: float = Field(default=10.0, gt=0, le=25)
    # Directory of the monthly CSV files (probes-YYYY-MM.csv); empty = no CSV.
    csv_dir: str = ""

    identity_targets: str = ""
    ca_gateway_targets: str = ""
    signer_targets: str = ""
    evidence_targets: str = ""
    notify_targets: str = ""
    # The CA gateway's HTTP endpoints as the prober reaches them (CRLs are fetched here
    # rather than at the public URL certificates name); empty = the URL from the CA record.
    ca_gateway_http_url: str = ""
    # Idempotency key of the prober's signing key in the signer.
    signer_key_request_id: str = "signet-prober-key-1"
