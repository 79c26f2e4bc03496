"""Signer settings: ``SIGNET_SIGNER_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings


class SignerSettings(ServiceSettings):
    """Settings of the signer, the only service that opens the HSM."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_SIGNER_", extra="ignore", frozen=True)

    service_name: str = "signer"
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/signer.db"
    max_batch_size: int = Field(default=1000, ge=1, le=10000)
    # Worker processes sharing the gRPC port (SO_REUSEPORT); 0 = one per CPU core.
    workers: int = Field(default=0, ge=0, le=64)
    # RFC 3161 timestamp authority for CAdES/PAdES B-T; empty = B-B only.
    tsa_url: str = ""
    tsa_timeout_seconds: float = Field(default=10.0, gt=0)
