"""CA gateway settings: ``SIGNET_CA_GATEWAY_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings


class CaGatewaySettings(ServiceSettings):
    """Settings of the ca-gateway service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_CA_GATEWAY_", extra="ignore", frozen=True)

    service_name: str = "ca-gateway"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/ca-gateway.db"
    signer_targets: str = "127.0.0.1:50053"
    identity_targets: str = "127.0.0.1:50051"
    http_port: int = Field(default=8082, ge=0, le=65535)
