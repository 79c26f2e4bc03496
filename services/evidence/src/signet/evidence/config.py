"""Evidence settings: ``SIGNET_EVIDENCE_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings


class EvidenceSettings(ServiceSettings):
    """Settings of the evidence service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_EVIDENCE_", extra="ignore", frozen=True)

    service_name: str = "evidence"
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/evidence.db"
    signer_targets: str = "127.0.0.1:50053"
    http_port: int = Field(default=8084, ge=0, le=65535)
