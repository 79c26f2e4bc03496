"""Identity settings: ``SIGNET_IDENTITY_<FIELD>`` environment variables."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings
from signet.identity.domain import Policy


class IdentitySettings(ServiceSettings):
    """Settings of the identity service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_IDENTITY_", extra="ignore", frozen=True)

    service_name: str = "identity"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/identity.db"

    # Peers: the signer holds the grant key, notify delivers one-time codes. The bearer
    # tokens identify identity to them (auth_mode token); mtls uses the TLS settings.
    signer_targets: str = "127.0.0.1:50053"
    notify_targets: str = "127.0.0.1:50055"
    signer_token: SecretStr = SecretStr("")
    notify_token: SecretStr = SecretStr("")
    peer_timeout_seconds: float = Field(default=10.0, gt=0)

    # Personal-data vault: data keys wrapped by an AES key in the HSM ("pkcs11"), or by a
    # key in process memory ("memory": tests and throwaway local runs only, since the
    # data cannot be read after a restart).
    vault_backend: Literal["pkcs11", "memory"] = "pkcs11"
    vault_kek_label: str = "signet-identity-vault-kek"

    # Identity check providers (HTTP/JSON); one base URL for all unless set per kind.
    provider_url: str = "http://127.0.0.1:18080"
    carrier_provider_url: str = ""
    bank_card_provider_url: str = ""
    face_provider_url: str = ""
    registry_provider_url: str = ""
    provider_api_key: SecretStr = SecretStr("")
    provider_timeout_seconds: float = Field(default=10.0, gt=0)

    code_ttl_seconds: int = Field(default=300, ge=30)
    max_code_attempts: int = Field(default=5, ge=1)
    grant_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    rate_window_seconds: int = Field(default=600, ge=1)
    max_checks_per_account: int = Field(default=5, ge=1)
    max_codes_per_destination: int = Field(default=10, ge=1)
    verification_validity_days: int = Field(default=730, ge=1)
    minor_age: int = Field(default=18, ge=1)
    retention_years: int = Field(default=5, ge=5)
    cancellation_working_days: int = Field(default=15, ge=1, le=15)
    # Time a user has to withdraw a cancellation; bounded so the 15 working days hold.
    cancellation_cooling_off_hours: float = Field(default=0, ge=0, le=168)
    rotation_grace_hours: float = Field(default=24, ge=0)
    # How often cancellations are completed and expired records purged.
    jobs_interval_seconds: float = Field(default=60, gt=0)

    def policy(self) -> Policy:
        """The enforced numbers as a domain value."""
        return Policy(
            code_ttl=timedelta(seconds=self.code_ttl_seconds),
            max_code_attempts=self.max_code_attempts,
            grant_ttl=timedelta(seconds=self.grant_ttl_seconds),
            rate_window=timedelta(seconds=self.rate_window_seconds),
            max_checks_per_account=self.max_checks_per_account,
            max_codes_per_destination=self.max_codes_per_destination,
            verification_validity=timedelta(days=self.verification_validity_days),
            minor_age=self.minor_age,
            retention_years=self.retention_years,
            cancellation_working_days=self.cancellation_working_days,
            cancellation_cooling_off=timedelta(hours=self.cancellation_cooling_off_hours),
            rotation_grace=timedelta(hours=self.rotation_grace_hours),
        )
