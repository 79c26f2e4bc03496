"""CA gateway settings: ``SIGNET_CA_GATEWAY_<FIELD>`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from signet.common.config import ServiceSettings

CaKeyAlgorithm = Literal["EC_P256", "EC_P384", "RSA_2048", "RSA_3072", "RSA_4096"]


class CaGatewaySettings(ServiceSettings):
    """Settings of the ca-gateway service."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_CA_GATEWAY_", extra="ignore", frozen=True)

    service_name: str = "ca-gateway"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    database_url: str = "sqlite:///.state/db/ca-gateway.db"
    signer_targets: str = "127.0.0.1:50053"
    identity_targets: str = "127.0.0.1:50051"
    call_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long to wait at start for the signer (the CA bootstrap needs it).
    startup_timeout_seconds: float = Field(default=60.0, ge=0)

    # Relying-party HTTP endpoints (CRL, OCSP, CA certificates).
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8082, ge=0, le=65535)
    # The URL relying parties reach those endpoints at (goes into every certificate's CRL
    # distribution point and AIA); default http://<http_host>:<http_port>.
    public_base_url: str = ""

    # The built-in CA hierarchy, made in the HSM at first start.
    organization: str = Field(default="Signet", min_length=1, max_length=64)
    country: str = Field(default="CN", min_length=2, max_length=2)
    root_ca_id: str = Field(default="root-1", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    issuing_ca_id: str = Field(default="issuing-1", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    root_key_algorithm: CaKeyAlgorithm = "EC_P384"
    issuing_key_algorithm: CaKeyAlgorithm = "EC_P256"
    root_validity_days: int = Field(default=20 * 365, ge=365)
    issuing_validity_days: int = Field(default=10 * 365, ge=30)
    # Certificate policy OID of the platform's CPS, and the CPS URL (optional qualifier).
    # The default is a UUID-derived OID (2.25.x, ITU-T X.667), unique without registration.
    certificate_policy_oid: str = Field(
        default="2.25.171522138463539740117418532398284812547", pattern=r"^[0-2](\.\d+)+$"
    )
    cps_url: str = ""

    # CRL: validity (next-update) and the scheduler republishes at half of it.
    crl_validity_hours: float = Field(default=24.0, gt=0)
    # OCSP responses' next-update.
    ocsp_validity_seconds: int = Field(default=3600, ge=60)
    # Scheduled work: renewals, CRLs, key retirements, expiry notices.
    scheduler_interval_seconds: float = Field(default=60.0, gt=0)

    @property
    def base_url(self) -> str:
        """Where relying parties reach the HTTP endpoints."""
        return (self.public_base_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")
