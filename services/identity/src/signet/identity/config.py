"""Identity settings: ``SIGNET_IDENTITY_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings


class IdentitySettings(ServiceSettings):
    """Settings of the identity service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_IDENTITY_", extra="ignore", frozen=True)

    service_name: str = "identity"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/identity.db"
    signer_targets: str = "127.0.0.1:50053"
    notify_targets: str = "127.0.0.1:50055"
