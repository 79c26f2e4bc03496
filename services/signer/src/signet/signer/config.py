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
    # The signer front executable (``signet-signer-front``, built from services/signer/front).
    # When set it takes the gRPC port: it passes calls through to the workers, which then
    # listen on Unix sockets in a private directory, and it sends concurrent SignDigest
    # calls of one caller to a worker together (see signet.signer.front). Empty = the
    # workers share the port themselves.
    front_binary: str = ""
    # SignDigest calls the front sends to a worker in one go, at most ...
    front_max_batch: int = Field(default=100, ge=1, le=1000)
    # ... and such groups each worker is given at a time.
    front_batches_per_worker: int = Field(default=1, ge=1, le=64)
    # RFC 3161 timestamp authority for CAdES/PAdES B-T; empty = B-B only.
    tsa_url: str = ""
    tsa_timeout_seconds: float = Field(default=10.0, gt=0)
