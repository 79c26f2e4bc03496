"""Evidence settings: ``SIGNET_EVIDENCE_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings
from signet.evidence.tsa import DEFAULT_POLICY_OID


class EvidenceSettings(ServiceSettings):
    """Settings of the evidence service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_EVIDENCE_", extra="ignore", frozen=True)

    service_name: str = "evidence"
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/evidence.db"
    # The signer holds the log key and the TSA key; the ca-gateway certifies the TSA key
    # and answers certificate lookups for packages (empty: no TSA, packages without certs).
    signer_targets: str = "127.0.0.1:50053"
    ca_gateway_targets: str = "127.0.0.1:50052"
    call_timeout_seconds: float = Field(default=10.0, gt=0)
    # HTTP: the RFC 3161 TSA (POST /tsa), the log key and the latest tree head; 0 = off.
    http_port: int = Field(default=8084, ge=0, le=65535)
    http_enabled: bool = True
    # Sequencing: integrate every interval, or at once when this many entries wait.
    integrate_interval_seconds: float = Field(default=0.2, gt=0)
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    # A fresh head is signed at least this often, even when nothing arrived.
    sign_interval_seconds: float = Field(default=60.0, gt=0)
    consume: bool = True
    tsa_enabled: bool = True
    tsa_policy_oid: str = DEFAULT_POLICY_OID
    # Witnesses that keep our tree heads: a directory and/or HTTP endpoints (comma-separated).
    witness_dir: str = ""
    witness_urls: str = ""
