"""Notify settings: ``SIGNET_NOTIFY_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings


class NotifySettings(ServiceSettings):
    """Settings of the notify service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_NOTIFY_", extra="ignore", frozen=True)

    service_name: str = "notify"
    grpc_port: int = Field(default=50055, ge=0, le=65535)
    metrics_port: int = Field(default=9105, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/notify.db"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
