"""Notify settings: ``SIGNET_NOTIFY_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings


class NotifySettings(ServiceSettings):
    """Settings of the notify service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_NOTIFY_", extra="ignore", frozen=True)

    service_name: str = "notify"
    grpc_port: int = Field(default=50055, ge=0, le=65535)
    metrics_port: int = Field(default=9105, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/notify.db"

    # 32 bytes, base64: seals stored addresses, sensitive parameters and webhook secrets
    # (AES-256-GCM) and keys the recipient hashes. Empty: a random key per process, so
    # what was sealed before a restart can no longer be opened (development only).
    data_key: SecretStr = SecretStr("")

    # Email over SMTP.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
    # "none", "starttls" (upgrade after EHLO) or "tls" (implicit TLS, usually port 465).
    smtp_security: str = Field(default="none", pattern="^(none|starttls|tls)$")
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    # CA bundle to verify the SMTP server with; empty = the system's.
    smtp_ca_file: str = ""
    smtp_from: str = "Signet <no-reply@signet.invalid>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    # SMS through an HTTP provider (JSON POST); empty URL = SMS deliveries fail permanently.
    sms_provider_url: str = ""
    sms_provider_token: SecretStr = SecretStr("")
    sms_timeout_seconds: float = Field(default=10.0, gt=0)
    # Prefix Chinese carriers require on every SMS, e.g. 【Signet】.
    sms_signature: str = "【Signet】"

    # Webhooks.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Plain-http webhook URLs (local development and tests only).
    webhook_allow_http: bool = False
    webhook_secret_grace_seconds: float = Field(default=86400.0, ge=0, le=30 * 86400)

    # Delivery: attempts per round before dead-lettering, backoff between them.
    max_attempts: int = Field(default=6, ge=1, le=50)
    retry_initial_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    retry_jitter_seconds: float = Field(default=1.0, ge=0)
    # A claimed delivery whose sender died is tried again after this long.
    claim_lease_seconds: float = Field(default=120.0, gt=0)
    dispatch_poll_seconds: float = Field(default=1.0, gt=0)
    dispatch_workers: int = Field(default=4, ge=1, le=64)

    # Per-recipient limit on attempts per channel (email and SMS) within the window.
    recipient_rate_limit: int = Field(default=20, ge=1)
    recipient_rate_window_seconds: float = Field(default=3600.0, gt=0)

    default_locale: str = Field(default="zh-CN", pattern="^(zh-CN|en)$")
    # JSON file of per-tenant template overrides: {tenant: {template: {locale: {...}}}}.
    template_overrides_file: str = ""

    # Identity (contact details) and evidence (incident notices) over gRPC.
    identity_targets: str = "127.0.0.1:50051"
    evidence_targets: str = "127.0.0.1:50054"
    # Bearer token notify presents to them (auth_mode token); its SERVICE_TOKEN when empty.
    peer_token: SecretStr = SecretStr("")
    peer_timeout_seconds: float = Field(default=5.0, gt=0)

    # Kafka consumer group of the event triggers.
    consumer_group: str = "notify"
    # Service principals allowed to declare incidents and replay dead letters.
    operator_principals: str = ""
